package archiver

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the archiver's Prometheus series.
type Metrics struct {
	Read          prometheus.Counter
	Files         prometheus.Counter
	Bytes         prometheus.Counter
	Events        prometheus.Counter
	Duplicates    prometheus.Counter
	CommitErrors  prometheus.Counter
	PutRetries    prometheus.Counter
	Abandoned     prometheus.Counter
	Lost          prometheus.Counter
	Skipped       prometheus.Counter
	Evicted       prometheus.Counter
	OpenFiles     prometheus.Gauge
	Uploading     prometheus.Gauge
	Lag           *prometheus.GaugeVec
	Partitions    prometheus.Gauge
	lastRollNanos atomic.Int64
}

// NewMetrics registers the archiver's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Read: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_records_read_total", Help: "Records read from Kafka into open files (durable only once their file is written).",
		}),
		Files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_files_written_total", Help: "Parquet files made durable in the lake.",
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_bytes_written_total", Help: "Bytes of the Parquet files made durable in the lake.",
		}),
		Events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_events_written_total", Help: "Rows in the Parquet files made durable in the lake.",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_duplicates_dropped_total", Help: "Records left out because their ce_id was already in the same file.",
		}),
		CommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_offset_commit_errors_total", Help: "Offset commits that failed after a file was durable (the lake's files still say where to resume).",
		}),
		PutRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_put_retries_total", Help: "Failed puts into the lake that were retried.",
		}),
		Abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_puts_abandoned_total", Help: "Files not put because their partition was revoked or the archiver stopped first; their records are read again by the next owner.",
		}),
		Lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_assignments_lost_total", Help: "Times the group gave this member's partitions away because it stalled past max.poll.interval.ms.",
		}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_records_skipped_total", Help: "Records read again (after a crash, a lost commit or a rebalance) and skipped because a file in the lake holds them.",
		}),
		Evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userstream_archiver_files_rolled_for_room_total", Help: "Files rolled early because another event date needed a file while the cap on open files was reached.",
		}),
		OpenFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_archiver_open_files", Help: "Files being filled, of every owned partition.",
		}),
		Uploading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_archiver_files_waiting", Help: "Finished files not yet in the lake (fetching pauses when as many wait as may be open).",
		}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "userstream_archiver_lag_records", Help: "Per partition: the high watermark minus the low water mark (the offset before which every record is in a durable file): records not yet archived.",
		}, []string{"partition"}),
		Partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userstream_archiver_assigned_partitions", Help: "Partitions this archiver owns in its consumer group.",
		}),
	}
	m.lastRollNanos.Store(time.Now().UnixNano())
	since := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "userstream_archiver_seconds_since_last_roll", Help: "Seconds since the last file was made durable (or since start).",
	}, func() float64 { return time.Since(time.Unix(0, m.lastRollNanos.Load())).Seconds() })
	reg.MustRegister(m.Read, m.Files, m.Bytes, m.Events, m.Duplicates, m.CommitErrors, m.PutRetries, m.Abandoned, m.Lost, m.Skipped, m.Evicted, m.OpenFiles, m.Uploading, m.Lag, m.Partitions, since)
	return m
}

func (m *Metrics) rolled(now time.Time, bytes, events int64) {
	m.Files.Inc()
	m.Bytes.Add(float64(bytes))
	m.Events.Add(float64(events))
	m.lastRollNanos.Store(now.UnixNano())
}
