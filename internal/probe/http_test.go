package probe_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userstream/userstream/internal/probe"
)

func TestHandlerServesHealthReadinessAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_test_total", Help: "a counter"}))
	ready := false
	h := probe.Handler(reg, func() (bool, any) {
		return ready, map[string]any{"ready": ready, "reason": "test"}
	})
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	check := func(rec *httptest.ResponseRecorder, status int, body string) {
		t.Helper()
		if rec.Code != status || rec.Body.String() != body || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("got %d %q (%s), want %d %q (application/json)", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), status, body)
		}
	}

	check(get(http.MethodGet, "/healthz"), http.StatusOK, `{"status":"ok"}`+"\n")
	check(get(http.MethodGet, "/readyz"), http.StatusServiceUnavailable, `{"ready":false,"reason":"test"}`+"\n")
	ready = true
	check(get(http.MethodGet, "/readyz"), http.StatusOK, `{"ready":true,"reason":"test"}`+"\n")
	if rec := get(http.MethodGet, "/metrics"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "probe_test_total 0") {
		t.Errorf("/metrics = %d %q, want 200 with probe_test_total", rec.Code, rec.Body.String())
	}
	if rec := get(http.MethodPost, "/healthz"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", rec.Code)
	}
}
