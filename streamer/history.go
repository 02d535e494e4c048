package streamer

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/replication"
)

// Exactly-once skips replayed records that its last progress record says
// are in Kafka. A progress record names positions, and positions are only
// meaningful in the history that made them: after a restore from a copy, a
// volume snapshot or a point-in-time recovery, after a failover to a server
// that never received that WAL, or on another cluster, the same LSNs hold
// other transactions, and skipping on them would silently lose users. So a
// record names its last transaction (commit LSN, xid, commit timestamp),
// and a session skips on it only after finding that very transaction in the
// slot's own stream. Nothing of this lives in a process's memory: every
// session decides again from the slot and the record.

// trusted returns the progress a session starting at start may skip on: pr
// when the slot's history holds the transaction it names, or none. It never
// fails for an unproven record; it ignores it, which can only repeat events
// (with their ce_id), never lose one, and says so loudly.
func (s *Streamer) trusted(ctx context.Context, pr progress, start pglogrepl.LSN) (progress, error) {
	if pr.commit < start {
		// The slot replays nothing at or before it: there is nothing to skip.
		return progress{}, nil
	}
	log := s.log.With().Str("slot", s.cfg.Slot).Str("progress_commit_lsn", pr.CommitLSN).Uint32("progress_xid", pr.Xid).
		Str("progress_system_id", pr.SystemID).Int32("progress_timeline", pr.Timeline).Str("slot_position", start.String()).Logger()
	want, ok := pr.commitID()
	if !ok {
		s.metrics.ProgressUnverified.Inc()
		log.Warn().Msg("exactly-once: the last progress record does not name its transaction (an earlier version wrote it), so it cannot be checked against this server's history and nothing is skipped on it: the events between the slot's position and it may arrive twice, with their ce_id")
		return progress{}, nil
	}
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	s.postgresOK.Store(err == nil)
	if err != nil {
		return progress{}, fmt.Errorf("check the last progress against the slot: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	got, found, err := replication.FindCommit(ctx, conn, s.cfg.Slot, s.cfg.Publication, pr.commit)
	if err != nil {
		return progress{}, fmt.Errorf("check the last progress against the slot: %w", err)
	}
	if found && got.Same(want) {
		log.Info().Int("records", pr.Records).Bool("complete", pr.Complete).
			Msg("exactly-once: resuming after the last committed progress, whose transaction this server's history holds; records at or before it are skipped")
		return pr, nil
	}
	s.metrics.ProgressUnverified.Inc()
	ev := log.Error()
	if found {
		ev = ev.Uint32("found_xid", got.Xid)
	}
	ev.Msg("exactly-once: the last progress record names a transaction that this server's history does not hold at that position: the database was restored (a file-system copy, a volume snapshot, a point-in-time recovery), failed over to a server that never received that WAL, or this is another cluster. Nothing is skipped on it: every transaction the slot replays is sent, so nothing is lost, and the events committed between the slot's position and the point where the histories part may arrive twice, with their ce_id. Users the restore or failover rolled back stay in Kafka. After a restore, move the id sequence past the largest id in Kafka before accepting writes (docs/operations.md, Restoring the database)")
	return progress{}, nil
}
