package streamer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/replication"
)

// Metrics are the streamer's Prometheus series.
type Metrics struct {
	Produced       prometheus.Counter
	Skipped        *prometheus.CounterVec
	DeliveryErrors prometheus.Counter
	Restarts       prometheus.Counter
	AckedLSN       prometheus.Gauge
	ReceivedLSN    prometheus.Gauge
	LagBytes       prometheus.Gauge
	Latency        prometheus.Histogram
	DeadLetters    prometheus.Counter
	Snapshot       *prometheus.GaugeVec
	GuardPassed    prometheus.Gauge
	GuardFailures  prometheus.Counter
	// ProgressUnverified counts exactly-once progress records a session did
	// not skip on, because this server's history does not hold them.
	ProgressUnverified prometheus.Counter
	SlotFailover       prometheus.Gauge
	// StatusUpdates counts standby status updates sent to PostgreSQL: about
	// ten a second while the position moves, not one per transaction.
	StatusUpdates prometheus.Counter
	role          *prometheus.GaugeVec
	walStatus     *prometheus.GaugeVec
}

// NewMetrics registers the streamer's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Produced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_events_produced_total", Help: "Events Kafka acknowledged.",
		}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userstream_streamer_changes_skipped_total", Help: "Replicated changes that make no event, by reason.",
		}, []string{"reason"}),
		DeliveryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_delivery_errors_total", Help: "Delivery reports with an error, and in exactly-once mode aborted Kafka commits (the events are resent).",
		}),
		Restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_session_restarts_total", Help: "Streaming sessions that ended in error and were resumed from the slot.",
		}),
		AckedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_streamer_acked_lsn", Help: "Last WAL position reported to PostgreSQL as flushed (all events before it are in Kafka).",
		}),
		ReceivedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_streamer_received_lsn", Help: "End of the last WAL data received.",
		}),
		LagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_streamer_replication_lag_bytes", Help: "The server's WAL position minus the slot's confirmed position, as PostgreSQL reports it: WAL the slot holds.",
		}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "userstream_streamer_commit_to_ack_seconds",
			Help:    "Time from a transaction's commit to Kafka's acknowledgement of its event.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_dead_letters_total", Help: "Poison changes (no valid event could be made) that Kafka acknowledged on the dead-letter topic.",
		}),
		Snapshot: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "userstream_streamer_snapshot_rows", Help: "The initial snapshot's rows: done (in Kafka) and total.",
		}, []string{"rows"}),
		GuardPassed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_streamer_publication_check_timestamp_seconds", Help: "When the publication and table check last passed; the slot is never acknowledged past it.",
		}),
		GuardFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_publication_check_failures_total", Help: "Publication checks that could not run (connection trouble); 30 s of them end the session.",
		}),
		SlotFailover: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_streamer_slot_failover", Help: "1 when the slot is a failover slot (PostgreSQL 17+): standbys with slot sync keep a copy, usable after a failover.",
		}),
		ProgressUnverified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_progress_unverified_total", Help: "Exactly-once session starts whose last progress record this server's history does not hold (a restore, a failover to a server without that WAL): nothing was skipped on it, so events may repeat.",
		}),
		StatusUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_streamer_status_updates_total", Help: "Standby status updates sent to PostgreSQL (the slot's reported position): a few a second while it moves.",
		}),
		walStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "userstream_streamer_slot_wal_status", Help: "1 for the slot's wal_status as last checked (reserved, extended, unreserved, lost).",
		}, []string{"status"}),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "userstream_streamer_role", Help: "1 for the streamer's current role (active, standby, reconnecting, starting, stopped).",
		}, []string{"role"}),
	}
	reg.MustRegister(m.Produced, m.Skipped, m.DeliveryErrors, m.Restarts, m.AckedLSN, m.ReceivedLSN, m.LagBytes, m.Latency, m.DeadLetters, m.Snapshot, m.GuardPassed, m.GuardFailures, m.ProgressUnverified, m.SlotFailover, m.StatusUpdates, m.role, m.walStatus)
	return m
}

func (m *Metrics) setRole(r string) {
	for _, known := range []string{"starting", "active", "standby", "reconnecting", "stopped"} {
		v := 0.0
		if known == r {
			v = 1
		}
		m.role.WithLabelValues(known).Set(v)
	}
}

// observeAcked counts records of t that Kafka took for good at time at:
// events, with their latency from the commit, and dead letters.
func (m *Metrics) observeAcked(t *delivery.Txn, events, letters int, at time.Time) {
	if letters > 0 {
		m.DeadLetters.Add(float64(letters))
	}
	if events == 0 {
		return
	}
	m.Produced.Add(float64(events))
	lat := at.Sub(t.Commit.Time).Seconds()
	for range events {
		m.Latency.Observe(lat)
	}
}

// observeSlot sets the slot's lag and WAL status as PostgreSQL reports them:
// the active streamer every second, standbys and reconnecting ones at every
// try, so no role keeps a stale value.
func (m *Metrics) observeSlot(st replication.SlotStatus) {
	m.LagBytes.Set(float64(max(st.LagBytes, 0)))
	m.setWALStatus(st.WALStatus)
	failover := 0.0
	if st.Failover {
		failover = 1
	}
	m.SlotFailover.Set(failover)
}

func (m *Metrics) setWALStatus(status string) {
	for _, known := range []string{"reserved", "extended", "unreserved", "lost"} {
		v := 0.0
		if known == status {
			v = 1
		}
		m.walStatus.WithLabelValues(known).Set(v)
	}
}
