package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/replication"
)

// The initial snapshot. The first run creates the slot with an exported
// snapshot and records, on the progress topic, that snapshot's boundary: the
// rows it sees are exactly those committed before the slot's consistent
// point, and everything after is in the slot's stream. While streaming goes
// on, the session reads those rows in chunks by id, each chunk filtered to
// the boundary (a row's xmin against the recorded pg_snapshot), and sends
// them into the stream's own delivery.

// SnapshotJob is the snapshot's state on the progress topic.
type SnapshotJob struct {
	Slot     string    `json:"slot"`
	State    string    `json:"state"` // creating, running or complete
	Boundary string    `json:"boundary,omitempty"`
	AfterID  int64     `json:"after_id"` // every row up to it is in Kafka
	UpToID   int64     `json:"up_to_id"`
	Total    int64     `json:"total"`
	Done     int64     `json:"done"`
	Started  time.Time `json:"started"`
}

// The snapshot's states.
const (
	SnapshotCreating = "creating" // the slot is being made; no boundary recorded yet
	SnapshotRunning  = "running"
	SnapshotComplete = "complete"
)

// ParseSnapshotJob reads a snapshot record; none (nil) is the zero job.
func ParseSnapshotJob(b []byte) (SnapshotJob, error) {
	var job SnapshotJob
	if b == nil {
		return job, nil
	}
	err := json.Unmarshal(b, &job)
	return job, err
}

// SnapshotConfig is where a snapshot reads and writes.
type SnapshotConfig struct {
	Source
	Chunk   int    // rows per query
	Key     []byte // its record on the progress topic
	Connect func(ctx context.Context) (*pgx.Conn, error)
	// Origin names the source of the events: the cluster's system
	// identifier and the database.
	Origin func() (systemID, database string)
	// Observe reports the rows done (in Kafka) and total.
	Observe func(done, total int64)
}

// Snapshot sends a running snapshot's chunks from the stream's read loop,
// between stream messages, so in exactly-once mode its records share the
// stream's transactions without a lock. A nil *Snapshot has nothing to do.
type Snapshot struct {
	cfg   SnapshotConfig
	d     Chunks
	job   SnapshotJob
	conn  *pgx.Conn
	cp    *copier
	last  time.Time // last chunk
	meter *progressMeter
}

// ResumeSnapshot picks up job where its last durable chunk ended; nil when
// it is not running.
func ResumeSnapshot(job SnapshotJob, cfg SnapshotConfig, d Chunks) *Snapshot {
	if job.State != SnapshotRunning {
		return nil
	}
	cfg.Log.Info().Int64("done", job.Done).Int64("total", job.Total).Int64("after_id", job.AfterID).Msg("snapshot: sending the users that existed before the slot while streaming")
	return &Snapshot{cfg: cfg, d: d, job: job, meter: newProgressMeter(cfg.Log, "snapshot", job.Total, job.Done, false)}
}

// Step sends the next chunk when one is due, and makes it durable with its
// cursor.
func (sn *Snapshot) Step(ctx context.Context) error {
	if sn == nil || sn.job.State != SnapshotRunning || time.Since(sn.last) < 10*time.Millisecond {
		return nil
	}
	sn.last = time.Now()
	if sn.conn == nil {
		conn, err := sn.cfg.Connect(ctx)
		if err != nil {
			return fmt.Errorf("snapshot: connect: %w", err)
		}
		sn.conn = conn
		systemID, database := sn.cfg.Origin()
		sn.cp = newCopier(sn.cfg.Source, sn.d, systemID, database, envelope.Snapshot, "snapshot")
	}
	c := &delivery.Chunk{}
	q := query{after: sn.job.AfterID, upTo: sn.job.UpToID, limit: sn.cfg.Chunk, where: " AND " + replication.VisibleIn(4), args: []any{sn.job.Boundary}}
	n, last, _, err := sn.cp.chunk(ctx, sn.conn, c, q, nil)
	if err != nil {
		return err
	}
	if n == 0 {
		sn.job.State = SnapshotComplete
	} else {
		sn.job.AfterID, sn.job.Done = last, sn.job.Done+int64(n)
	}
	cursor, err := json.Marshal(sn.job)
	if err != nil {
		return err
	}
	if err := sn.d.Durable(ctx, c, sn.cfg.Key, cursor); err != nil {
		return fmt.Errorf("snapshot chunk after id %d: %w", sn.job.AfterID, err)
	}
	sn.report()
	return nil
}

func (sn *Snapshot) report() {
	if sn.cfg.Observe != nil {
		sn.cfg.Observe(sn.job.Done, sn.job.Total)
	}
	if sn.job.State == SnapshotComplete {
		sn.meter.done(sn.job.Done)
		return
	}
	sn.meter.update(sn.job.Done)
}

// Due is how soon the next chunk is: a running snapshot keeps the reader
// from waiting long for stream messages.
func (sn *Snapshot) Due() time.Duration {
	if sn == nil || sn.job.State != SnapshotRunning {
		return time.Hour
	}
	return 10*time.Millisecond - time.Since(sn.last)
}

// Close closes the snapshot's connection.
func (sn *Snapshot) Close() {
	if sn != nil && sn.conn != nil {
		sn.conn.Close(context.Background())
	}
}
