package streamer

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /healthz (the process is alive), /readyz (200 when active
// or standby, 503 while starting or reconnecting) and /metrics.
func (s *Streamer) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		role := s.Role()
		pg, kafka := reach(s.postgresOK.Load()), reach(s.kafkaOK.Load())
		status := http.StatusOK
		if (role != "active" && role != "standby") || pg != "ok" || (role == "active" && kafka != "ok") {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]string{"role": role, "slot": s.cfg.Slot, "postgres": pg, "kafka": kafka})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func reach(ok bool) string {
	if ok {
		return "ok"
	}
	return "unreachable"
}
