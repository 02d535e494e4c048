package probe

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// WriteJSON answers with status and v encoded as a JSON body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHealthz answers /healthz: 200 {"status":"ok"} whenever the process
// serves at all, since it only says the process is alive.
func ServeHealthz(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers /readyz from ready: 200 when it reports ready, 503
// otherwise, with its body as JSON either way.
func Readyz(ready func() (ready bool, body any)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		ok, body := ready()
		status := http.StatusServiceUnavailable
		if ok {
			status = http.StatusOK
		}
		WriteJSON(w, status, body)
	}
}

// Register adds GET /healthz (ServeHealthz) and GET /metrics (what g
// gathers) to mux, for a mux that has routes of its own and its own /readyz.
func Register(mux *http.ServeMux, g prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", ServeHealthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}

// Handler serves GET /healthz, GET /readyz (Readyz(ready)) and GET /metrics
// (what g gathers): the whole metrics address of a program.
func Handler(g prometheus.Gatherer, ready func() (ready bool, body any)) *http.ServeMux {
	mux := http.NewServeMux()
	Register(mux, g)
	mux.HandleFunc("GET /readyz", Readyz(ready))
	return mux
}
