package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

const requestIDHeader = "X-Request-Id"

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userstream_api_requests_total",
			Help: "HTTP requests answered, by route, method and status (499: the client disconnected before the answer).",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "userstream_api_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// requestInfo collects what the access log may say about a request: never
// its body, never personal data.
type requestInfo struct {
	userID     int64
	err        error
	clientGone bool
}

type infoKey struct{}

func reqInfo(r *http.Request) *requestInfo {
	if ri, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// instrument gives every request an id, and logs and counts it once answered.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(requestIDHeader, id)
		ri := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}

		next.ServeHTTP(sw, r)

		elapsed := time.Since(start)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		status := sw.status
		level := zerolog.InfoLevel
		switch {
		case ri.clientGone:
			status, level = statusClientGone, zerolog.DebugLevel
		case status >= 500:
			level = zerolog.ErrorLevel
		}
		method := knownMethod(r.Method)
		s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(elapsed.Seconds())

		ev := s.log.WithLevel(level).
			Str("request_id", id).
			Str("method", method).
			Str("route", route).
			Int("status", status).
			Float64("latency_ms", float64(elapsed.Microseconds())/1000)
		if ri.userID != 0 {
			ev = ev.Int64("user_id", ri.userID)
		}
		if ri.err != nil {
			ev = ev.AnErr("error", ri.err)
		}
		ev.Msg("request")
	})
}

// validRequestID accepts 1–64 characters of [A-Za-z0-9._-], so a client's id
// can be echoed and logged without injecting anything.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// knownMethod keeps metric labels and logs to the methods HTTP defines: Go's
// server accepts any token as a method, and each new label value is a new
// series a client could create without end.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
