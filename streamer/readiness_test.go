package streamer_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/streamer"
)

type readyz struct {
	status                        int
	Ready                         bool
	Role, Postgres, Kafka, Reason string
}

// runStreamer runs a streamer in this process with its /readyz on a test
// server; stop cancels it and waits for Run to return.
func runStreamer(t *testing.T, cfg streamer.Config) (get func() readyz, stop func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := streamer.New(cfg, zerolog.Nop(), streamer.NewMetrics(reg))
	srv := httptest.NewServer(s.Handler(reg))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("streamer did not stop within 30 s")
		}
	}
	t.Cleanup(stop)
	get = func() readyz {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			return readyz{}
		}
		defer resp.Body.Close()
		r := readyz{status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return r
	}
	return get, stop
}

func TestReadinessTellsTheTruthForEveryRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	check := func(name string, got readyz, status int, postgres, kafka string) {
		t.Helper()
		if got.status != status || got.Ready != (status == http.StatusOK) || got.Postgres != postgres || got.Kafka != kafka || got.Reason == "" {
			t.Errorf("%s: /readyz = %+v, want %d with postgres %q, kafka %q and a reason", name, got, status, postgres, kafka)
		}
	}
	role := func(get func() readyz, want string) readyz {
		t.Helper()
		var r readyz
		e2e.WaitFor(t, 30*time.Second, "role "+want, func() bool { r = get(); return r.Role == want })
		return r
	}

	getA, stopA := runStreamer(t, e.config(0))
	check("active", role(getA, "active"), http.StatusOK, "ok", "ok")

	getB, _ := runStreamer(t, e.config(0))
	check("standby", role(getB, "standby"), http.StatusOK, "ok", "not_used")

	stopA()
	check("stopped", role(getA, "stopped"), http.StatusServiceUnavailable, "not_checked", "not_checked")
	check("standby after takeover", role(getB, "active"), http.StatusOK, "ok", "ok")

	cfg := e.config(0)
	cfg.DatabaseURL = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	getC, _ := runStreamer(t, cfg)
	r := role(getC, "reconnecting")
	if r.status != http.StatusServiceUnavailable || r.Ready || r.Postgres != "unreachable" || r.Kafka != "not_checked" {
		t.Errorf("reconnecting without PostgreSQL: /readyz = %+v, want 503 with postgres unreachable and kafka not_checked (never tried)", r)
	}
}
