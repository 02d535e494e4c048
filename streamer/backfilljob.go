package streamer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/replication"
)

// A backfill is a job on the progress topic, like the initial snapshot:
// chunked by id, each chunk durable together with a cursor record, so that
// running the same backfill again after a crash resumes after its last
// durable chunk instead of starting over. In exactly-once mode chunk and
// cursor commit in one Kafka transaction of the backfill's own
// transactional id.

type backfillJob struct {
	key     string
	State   string    `json:"state"` // running or complete
	AfterID int64     `json:"after_id"`
	UpToID  int64     `json:"up_to_id"`
	Total   int64     `json:"total"`
	Done    int64     `json:"done"`
	Started time.Time `json:"started,omitzero"`
}

// startBackfillJob resumes a backfill of the same id range when a run of
// it did not complete, or starts a new one. A --missing backfill never
// resumes: its boundary belongs to the incident it ran for, and a later
// incident's missing users lie past it. Starting over costs nothing
// twice, as the keys it reads show what the interrupted run sent.
func (s *Streamer) startBackfillJob(ctx context.Context, conn *pgx.Conn, key string, r BackfillRange) (backfillJob, error) {
	job := backfillJob{key: key}
	b, err := s.readRecord(ctx, []byte(job.key))
	if err != nil {
		return job, fmt.Errorf("read the backfill's record: %w", err)
	}
	if b != nil {
		if err := json.Unmarshal(b, &job); err != nil {
			return job, fmt.Errorf("backfill record %s: %w", job.key, err)
		}
		switch {
		case job.State == "running" && r.Missing:
			s.log.Info().Str("job", job.key).Int64("interrupted_up_to_id", job.UpToID).Time("interrupted_started", job.Started).
				Msg("backfill: an earlier --missing run was interrupted; not resuming it, as its boundary may predate this incident: starting over up to the largest id now, skipping every user the topic already holds")
		case job.State == "running":
			if r.UpToID == 0 {
				// Asked for every user: the largest id is now's, not the
				// interrupted run's.
				if err := s.extendBackfillJob(ctx, conn, &job, true); err != nil {
					return job, err
				}
			}
			s.log.Info().Str("job", job.key).Int64("after_id", job.AfterID).Int64("up_to_id", job.UpToID).Int64("done", job.Done).Time("started", job.Started).
				Msg("backfill: resuming after the last durable chunk")
			return job, nil
		}
	}
	job = backfillJob{key: job.key, State: "running", AfterID: r.AfterID, UpToID: r.UpToID, Started: time.Now().UTC()}
	if err := s.extendBackfillJob(ctx, conn, &job, r.UpToID == 0); err != nil {
		return job, err
	}
	s.log.Info().Str("job", job.key).Int64("after_id", job.AfterID).Int64("up_to_id", job.UpToID).Int64("rows", job.Total).Msg("backfill: starting")
	return job, nil
}

// extendBackfillJob moves a job's end to the largest id now when toLargest
// (it was asked for every user), and counts what is left of it.
func (s *Streamer) extendBackfillJob(ctx context.Context, conn *pgx.Conn, job *backfillJob, toLargest bool) error {
	ns, name := s.cfg.Projectors[0].Table()
	table := replication.QuoteTable(ns + "." + name)
	var largest int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM "+table).Scan(&largest); err != nil {
		return fmt.Errorf("find the last user: %w", err)
	}
	if toLargest {
		job.UpToID = max(job.UpToID, largest)
	}
	var left int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id > $1 AND id <= $2", job.AfterID, job.UpToID).Scan(&left); err != nil {
		return fmt.Errorf("count the users to backfill: %w", err)
	}
	job.Total = job.Done + left
	return nil
}

// backfillWriter is a backfill's producer and its delivery, in the
// streamer's delivery mode, with its own transactional id in exactly-once
// mode. Its context ends when a delivery fails.
type backfillWriter struct {
	sink   *kafkasink.Sink
	d      *delivery.Stream
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	fail   error // what ended Serve
	stop   chan struct{}
	ended  sync.WaitGroup
}

func (s *Streamer) newBackfillWriter(ctx context.Context) (*backfillWriter, error) {
	sink, err := s.newSink(s.cfg.Delivery.Producer(s.cfg.Kafka, s.cfg.Slot+"-backfill", s.cfg.TransactionInterval))
	if err != nil {
		return nil, err
	}
	cfg := s.deliveryConfig(delivery.Hooks{})
	cfg.ProgressKey = nil // a backfill never skips on the stream's progress
	w := &backfillWriter{sink: sink, d: delivery.New(cfg, sink, nil), stop: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.ended.Add(1)
	go func() {
		defer w.ended.Done()
		if err := w.d.Serve(w.ctx, w.stop); err != nil {
			w.mu.Lock()
			w.fail = err
			w.mu.Unlock()
			w.cancel()
		}
	}()
	if err := sink.EnsureTopic(ctx); err != nil {
		w.close()
		return nil, err
	}
	if _, err := w.d.Start(ctx, s.cfg.Kafka.Properties, s.cfg.Kafka.ProgressTopic); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// err is the failed delivery that ended the writer, if one did, in place
// of err (which is then its consequence: a cancelled context).
func (w *backfillWriter) err(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return w.fail
	}
	return err
}

func (w *backfillWriter) close() {
	// A failed chunk's transaction would pin every read_committed consumer
	// of the topic until it timed out.
	w.d.Close()
	close(w.stop)
	w.ended.Wait()
	w.cancel()
	w.sink.Close()
}
