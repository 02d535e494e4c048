// Package probe is the `healthcheck` subcommand of both programs: container
// runtimes without curl ask the process's own /healthz through it.
package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Healthz asks http://127.0.0.1:<port of listenAddr>/healthz and returns nil
// on 200.
func Healthz(ctx context.Context, listenAddr string) error {
	_, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return fmt.Errorf("healthcheck: listen address %q: %w", listenAddr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	return nil
}
