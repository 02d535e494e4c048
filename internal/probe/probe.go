// Package probe is what the programs serve for their orchestrator and
// monitoring: GET /healthz, /readyz and /metrics (Handler, or Register and
// Readyz beside other routes), the JSON answers they and the API write
// (WriteJSON), the `healthcheck` subcommand (container runtimes without curl
// ask the process's own /healthz through it, Healthz) and Go's profiles on
// demand (WithProfiles).
package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
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

// WithProfiles serves Go's profiles at /debug/pprof/ (heap, goroutine,
// profile, …) beside h, on the metrics address: PPROF=true in both
// programs.
func WithProfiles(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}
