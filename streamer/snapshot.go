package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/replication"
)

// Snapshot is whether the first run sends the users that existed before it.
type Snapshot string

// The snapshot settings.
const (
	SnapshotInitial Snapshot = "initial"
	SnapshotNever   Snapshot = "never"
)

// The initial snapshot. The first run creates the slot with an exported
// snapshot and records, on the progress topic, that snapshot's boundary: the
// rows it sees are exactly those committed before the slot's consistent
// point, and everything after is in the slot's stream. While streaming goes
// on, the session reads those rows in chunks by id, each chunk filtered to
// the boundary (a row's xmin against the recorded pg_snapshot), and sends
// them as events with the same ce_id as streamed ones. Each chunk is made
// durable together with a cursor record, so a restarted streamer resumes
// after the last durable chunk: in exactly-once mode, chunk and cursor
// commit in one Kafka transaction, so no row is sent twice.

// snapshotJob is the snapshot's state on the progress topic.
type snapshotJob struct {
	Slot     string    `json:"slot"`
	State    string    `json:"state"` // creating, running or complete
	Boundary string    `json:"boundary,omitempty"`
	AfterID  int64     `json:"after_id"` // every row up to it is in Kafka
	UpToID   int64     `json:"up_to_id"`
	Total    int64     `json:"total"`
	Done     int64     `json:"done"`
	Started  time.Time `json:"started"`
}

func (s *Streamer) loadSnapshotJob(ctx context.Context) (snapshotJob, error) {
	b, err := s.readRecord(ctx, s.snapshotKey())
	if err != nil {
		return snapshotJob{}, err
	}
	return s.parseSnapshotJob(b)
}

// parseSnapshotJob reads a snapshot record; none is the zero job.
func (s *Streamer) parseSnapshotJob(b []byte) (snapshotJob, error) {
	var job snapshotJob
	if b == nil {
		return job, nil
	}
	if err := json.Unmarshal(b, &job); err != nil {
		return job, permanent(fmt.Errorf("snapshot record on %s: %w", s.cfg.Kafka.ProgressTopic, err))
	}
	return job, nil
}

// redoInterruptedFirstRun finds a first run that created its slot but died
// before recording the snapshot's boundary (record is the snapshot record
// on the progress topic). Nothing was streamed from such a slot, so it is
// dropped and the first run starts again.
func (s *Streamer) redoInterruptedFirstRun(ctx context.Context, conn *pgx.Conn, slotMissing bool, record []byte) (bool, error) {
	job, err := s.parseSnapshotJob(record)
	if err != nil {
		return false, err
	}
	if job.State != "creating" {
		return false, nil
	}
	if !slotMissing {
		if err := replication.DropSlot(ctx, conn, s.cfg.Slot); err != nil {
			return false, fmt.Errorf("%w: drop the slot of an interrupted first run: %w", errBeforeStart, err)
		}
	}
	s.log.Warn().Str("slot", s.cfg.Slot).Msg("the first run was interrupted before its snapshot was recorded; starting it again")
	return true, nil
}

// createSlot creates the slot: on the first run with SNAPSHOT=initial with
// an exported snapshot whose boundary is recorded first.
func (s *Streamer) createSlot(ctx context.Context, conn *pgx.Conn, target replication.Target, first bool) error {
	if !first || s.cfg.Snapshot != SnapshotInitial {
		if _, err := replication.CreateSlot(ctx, conn, s.cfg.Slot, !s.cfg.DisableSlotFailover); err != nil {
			return fmt.Errorf("%w: %w", errBeforeStart, err)
		}
		s.log.Warn().Str("slot", s.cfg.Slot).Msg("created replication slot: rows committed before it are not streamed; if this is not the first run, run `streamer backfill --missing`")
		return nil
	}
	sink, err := s.newSink(s.plainKafka())
	if err != nil {
		return permanent(err)
	}
	defer sink.Close()
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sink.EnsureTopic(kctx); err != nil {
		return retryable(err)
	}
	write := func(job snapshotJob) error {
		b, err := json.Marshal(job)
		if err != nil {
			return err
		}
		return sink.WriteProgress(kctx, s.snapshotKey(), b)
	}
	// The intent comes first: a slot whose boundary was never recorded is
	// then known to be safe to drop and make again.
	if err := write(snapshotJob{Slot: s.cfg.Slot, State: "creating"}); err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	ns, name := s.cfg.Projectors[0].Table()
	b, err := replication.CreateSlotWithSnapshot(ctx, target, s.cfg.Slot, ns+"."+name, !s.cfg.DisableSlotFailover)
	if err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	job := snapshotJob{Slot: s.cfg.Slot, State: "running", Boundary: b.Snapshot, UpToID: b.MaxID, Total: b.Rows, Started: time.Now().UTC()}
	if b.Rows == 0 {
		job.State = "complete"
	}
	if err := write(job); err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	s.log.Info().Str("slot", s.cfg.Slot).Int64("rows", b.Rows).Msg("created replication slot with a snapshot: the users that existed before it are sent while streaming goes on")
	return nil
}

// snapshotter sends the snapshot's chunks from the session's read loop.
type snapshotter struct {
	p     *pipe
	job   snapshotJob
	conn  *pgx.Conn
	cp    *copier
	last  time.Time // last chunk
	meter *progressMeter
}

// resumeSnapshot picks up a snapshot that is not complete; p.snap stays nil
// when there is none.
func (p *pipe) resumeSnapshot(ctx context.Context) error {
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	job, err := p.s.loadSnapshotJob(kctx)
	if err != nil {
		if errors.Is(err, ErrPermanent) {
			return err
		}
		return fmt.Errorf("%w: read the snapshot record: %w", errBeforeStart, err)
	}
	if job.State != "running" {
		return nil
	}
	p.snap = &snapshotter{p: p, job: job, meter: newProgressMeter(p.s.log, "snapshot", job.Total, job.Done, false)}
	p.s.log.Info().Int64("done", job.Done).Int64("total", job.Total).Int64("after_id", job.AfterID).Msg("snapshot: sending the users that existed before the slot while streaming")
	return nil
}

// step sends the next chunk when one is due. It runs on the read goroutine,
// between stream messages, so in exactly-once mode its records share the
// stream's transactions without a lock.
func (sn *snapshotter) step(ctx context.Context) error {
	if sn == nil || sn.job.State != "running" || time.Since(sn.last) < 10*time.Millisecond {
		return nil
	}
	sn.last = time.Now()
	if sn.conn == nil {
		conn, err := sn.p.target.Connect(ctx)
		if err != nil {
			return fmt.Errorf("snapshot: connect: %w", err)
		}
		sn.conn = conn
	}
	c := &delivery.Chunk{}
	n, last, err := sn.send(ctx, c)
	if err != nil {
		return err
	}
	if n == 0 {
		sn.job.State = "complete"
	} else {
		sn.job.AfterID, sn.job.Done = last, sn.job.Done+int64(n)
	}
	cursor, err := json.Marshal(sn.job)
	if err != nil {
		return err
	}
	if err := sn.p.d.Durable(ctx, c, sn.p.s.snapshotKey(), cursor); err != nil {
		return fmt.Errorf("snapshot chunk after id %d: %w", sn.job.AfterID, err)
	}
	sn.report()
	return nil
}

// send produces the next chunk's events and returns how many rows it read
// and the last id.
func (sn *snapshotter) send(ctx context.Context, c *delivery.Chunk) (int, int64, error) {
	rows, b, idCol, err := selectUsers(ctx, sn.conn, sn.p.s.cfg.Projectors[0], sn.job.AfterID, sn.job.UpToID, sn.p.s.cfg.SnapshotChunk,
		" AND "+replication.VisibleIn(4), sn.job.Boundary)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	if sn.cp == nil {
		sn.cp = sn.p.s.newCopier(sn.p.d, sn.p.reader.SystemID(), sn.p.reader.Database(), envelope.Snapshot, "snapshot")
	}
	n, last := 0, sn.job.AfterID
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			// pgx's message may quote the value: row contents stay out of
			// errors, which reach logs.
			return n, last, fmt.Errorf("snapshot: read the user after id %d: %w", last, replication.ErrUndecodable)
		}
		if last, err = integerValue(vals[idCol]); err != nil {
			return n, last, err
		}
		n++
		if _, _, err := sn.cp.copy(ctx, c, b, last, vals); err != nil {
			return n, last, err
		}
	}
	return n, last, rows.Err()
}

func (sn *snapshotter) report() {
	m := sn.p.s.metrics
	m.Snapshot.WithLabelValues("done").Set(float64(sn.job.Done))
	m.Snapshot.WithLabelValues("total").Set(float64(sn.job.Total))
	if sn.job.State == "complete" {
		sn.meter.done(sn.job.Done)
		return
	}
	sn.meter.update(sn.job.Done)
}

// due is how soon the next chunk is: a running snapshot keeps the reader
// from waiting long for stream messages.
func (sn *snapshotter) due() time.Duration {
	if sn == nil || sn.job.State != "running" {
		return time.Hour
	}
	return 10*time.Millisecond - time.Since(sn.last)
}

func (sn *snapshotter) close() {
	if sn != nil && sn.conn != nil {
		sn.conn.Close(context.Background())
	}
}
