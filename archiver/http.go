package archiver

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /healthz (the process is alive), /readyz (200 once the
// archiver has joined its group and both Kafka and the lake answer, 503
// otherwise) and /metrics.
func (a *Archiver) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		joined, kafka, lake := a.joined.Load(), reach(a.kafkaOK.Load()), reach(a.lakeOK.Load())
		status := http.StatusOK
		if !joined || kafka != "ok" || lake != "ok" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"joined": joined, "kafka": kafka, "lake": lake, "partitions": a.owned.Load()})
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
