package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/backfill"
	"github.com/userstream/userstream/replication"
)

// Snapshot is whether the first run sends the users that existed before it.
type Snapshot string

// The snapshot settings.
const (
	SnapshotInitial Snapshot = "initial"
	SnapshotNever   Snapshot = "never"
)

// The initial snapshot (package backfill sends it). The first run creates
// the slot with an exported snapshot and records, on the progress topic,
// that snapshot's boundary, after recording its intent: a first run
// interrupted in between is started again.

func (s *Streamer) loadSnapshotJob(ctx context.Context) (backfill.SnapshotJob, error) {
	b, err := s.readRecord(ctx, s.snapshotKey())
	if err != nil {
		return backfill.SnapshotJob{}, err
	}
	return s.parseSnapshotJob(b)
}

// parseSnapshotJob reads a snapshot record; none is the zero job.
func (s *Streamer) parseSnapshotJob(b []byte) (backfill.SnapshotJob, error) {
	job, err := backfill.ParseSnapshotJob(b)
	if err != nil {
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
	if job.State != backfill.SnapshotCreating {
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
	write := func(job backfill.SnapshotJob) error {
		b, err := json.Marshal(job)
		if err != nil {
			return err
		}
		return sink.WriteProgress(kctx, s.snapshotKey(), b)
	}
	// The intent comes first: a slot whose boundary was never recorded is
	// then known to be safe to drop and make again.
	if err := write(backfill.SnapshotJob{Slot: s.cfg.Slot, State: backfill.SnapshotCreating}); err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	ns, name := s.cfg.Projectors[0].Table()
	b, err := replication.CreateSlotWithSnapshot(ctx, target, s.cfg.Slot, ns+"."+name, !s.cfg.DisableSlotFailover)
	if err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	job := backfill.SnapshotJob{Slot: s.cfg.Slot, State: backfill.SnapshotRunning, Boundary: b.Snapshot, UpToID: b.MaxID, Total: b.Rows, Started: time.Now().UTC()}
	if b.Rows == 0 {
		job.State = backfill.SnapshotComplete
	}
	if err := write(job); err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	s.log.Info().Str("slot", s.cfg.Slot).Int64("rows", b.Rows).Msg("created replication slot with a snapshot: the users that existed before it are sent while streaming goes on")
	return nil
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
	m := p.s.metrics
	p.snap = backfill.ResumeSnapshot(job, backfill.SnapshotConfig{
		Source: p.s.copySource(), Chunk: p.s.cfg.SnapshotChunk, Key: p.s.snapshotKey(), Connect: p.target.Connect,
		Origin: func() (string, string) { return p.reader.SystemID(), p.reader.Database() },
		Observe: func(done, total int64) {
			m.Snapshot.WithLabelValues("done").Set(float64(done))
			m.Snapshot.WithLabelValues("total").Set(float64(total))
		},
	}, p.d)
	return nil
}
