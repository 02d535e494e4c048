package archiver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userstream/userstream/internal/probe"
)

// Handler serves /healthz (the process is alive), /readyz (200 once the
// archiver has joined its group and both Kafka and the lake answer, 503
// otherwise) and /metrics.
func (a *Archiver) Handler(g prometheus.Gatherer) http.Handler {
	return probe.Handler(g, func() (bool, any) {
		joined, kafka, lake := a.joined.Load(), reach(a.kafkaOK.Load()), reach(a.lakeOK.Load())
		ready := joined && kafka == "ok" && lake == "ok"
		return ready, map[string]any{"joined": joined, "kafka": kafka, "lake": lake, "partitions": a.owned.Load()}
	})
}

func reach(ok bool) string {
	if ok {
		return "ok"
	}
	return "unreachable"
}
