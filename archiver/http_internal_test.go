package archiver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestReadinessFallsWhenTheGroupTakesThePartitionsAway(t *testing.T) {
	a := New(Config{Topic: "t", Group: "g"}, nil, nil, zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	a.kafkaOK.Store(true)
	a.lakeOK.Store(true)
	a.joined.Store(true)
	ready := func() int {
		rec := httptest.NewRecorder()
		a.Handler(prometheus.NewRegistry()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("joined, Kafka and the lake answering: %d, want 200", code)
	}
	a.lostAssignment()
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("after the assignment was lost: %d, want 503", code)
	}
}
