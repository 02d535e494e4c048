package streamer

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/replication"
)

// Exactly-once skips replayed records that its last progress record says
// are in Kafka. A progress record names positions, and positions only mean
// something in the history that made them: after a restore from a copy, a
// volume snapshot or a point-in-time recovery, after a failover to a server
// that never received that WAL, or on another cluster, the same LSNs hold
// other transactions, and skipping on them would silently lose users. So a
// record names its last transaction (commit LSN, xid, commit timestamp),
// and a session skips on it only while proving it: the slot replays in
// commit order, so that transaction is the last one the record covers. Until
// the stream shows it, the session acknowledges nothing past where it
// started; if the stream passes its position without it, the session ends
// and the next one skips nothing. Nothing decided here outlives a session
// without being decided again from the slot and the record, except which
// record this process has already found wanting.

// errHistoryDiffers ends a session whose progress record the stream did not
// bear out; the next session skips nothing on that record.
var errHistoryDiffers = errors.New("the last progress record names a transaction this server's history does not hold")

// historyCheck is a session's proof, in progress, that its progress record
// belongs to the slot's history.
type historyCheck struct {
	want    replication.CommitID
	pending bool
}

// trusted returns the progress a session starting at start may skip on, and
// whether the stream must still bear it out. serverWAL is the server's WAL
// position before the session: a record past it names a commit this server
// never wrote. A record that cannot be borne out (an earlier version's, one
// past serverWAL, or one this process already found wanting) skips
// nothing: that can repeat events (with their ce_id), never lose one.
func (s *Streamer) trusted(pr delivery.Progress, start, serverWAL pglogrepl.LSN) (delivery.Progress, historyCheck) {
	if pglogrepl.LSN(pr.CommitPosition()) < start {
		// The slot replays nothing at or before it: there is nothing to skip.
		return delivery.Progress{}, historyCheck{}
	}
	want, ok := commitID(pr)
	switch {
	case !ok:
		s.metrics.ProgressUnverified.Inc()
		s.progressLog(pr, start).Warn().Msg("exactly-once: the last progress record does not name its transaction (an earlier version wrote it), so it cannot be checked against this server's history and nothing is skipped on it: the events between the slot's position and it may arrive twice, with their ce_id")
		return delivery.Progress{}, historyCheck{}
	case want.LSN >= serverWAL:
		s.historyDiffers(pr, start, fmt.Errorf("%w: the server's WAL is at %s, before it", errHistoryDiffers, serverWAL))
		return delivery.Progress{}, historyCheck{}
	}
	if found, _ := s.distrusted.Load().(replication.CommitID); found.Same(want) {
		s.metrics.ProgressUnverified.Inc()
		s.progressLog(pr, start).Warn().Msg("exactly-once: skipping nothing on the last progress record, which this server's history does not hold (see the error before)")
		return delivery.Progress{}, historyCheck{}
	}
	s.progressLog(pr, start).Info().Int("records", pr.Records).Bool("complete", pr.Complete).
		Msg("exactly-once: resuming after the last committed progress; records at or before it are skipped once the stream shows its transaction, and nothing past the start is acknowledged before")
	return pr, historyCheck{want: want, pending: true}
}

// bears checks the first record of each transaction the session meets while
// the check is pending, in commit order: transactions before the record's
// are covered by it; the record's own transaction proves the history; any
// other transaction at or past its position disproves it.
func (h *historyCheck) bears(cur delivery.Position) (bool, error) {
	lsn := pglogrepl.LSN(cur.LSN)
	switch {
	case !h.pending || lsn < h.want.LSN:
		return false, nil
	case h.want.Same(replication.CommitID{LSN: lsn, Xid: cur.Xid, Time: cur.Time}):
		h.pending = false
		return true, nil
	}
	return false, fmt.Errorf("%w: found xid %d at %s", errHistoryDiffers, cur.Xid, lsn)
}

// passed checks the server's position while idle: once the stream is past
// the record's position without its transaction, the history differs.
func (h *historyCheck) passed(serverWALEnd pglogrepl.LSN) error {
	if h.pending && serverWALEnd > h.want.LSN {
		return fmt.Errorf("%w: the stream passed %s without it", errHistoryDiffers, h.want.LSN)
	}
	return nil
}

// disproved ends a session whose stream did not bear its progress record
// out: nothing past the start was acknowledged, and the next session skips
// nothing on the record.
func (s *Streamer) disproved(pr delivery.Progress, start pglogrepl.LSN, err error) error {
	s.historyDiffers(pr, start, err)
	return fmt.Errorf("%w: %w", errBeforeStart, err)
}

// historyDiffers remembers, for this process's later sessions, a progress
// record this server's history does not hold, and says loudly what it means.
func (s *Streamer) historyDiffers(pr delivery.Progress, start pglogrepl.LSN, err error) {
	if want, ok := commitID(pr); ok {
		s.distrusted.Store(want)
	}
	s.metrics.ProgressUnverified.Inc()
	s.progressLog(pr, start).Error().Err(err).Msg("exactly-once: the last progress record names a transaction that this server's history does not hold at that position: the database was restored (a file-system copy, a volume snapshot, a point-in-time recovery), failed over to a server that never received that WAL, or this is another cluster. Nothing is skipped on it and nothing was acknowledged past the slot's position: every transaction the slot replays is sent, so nothing is lost; the events committed between the slot's position and the point where the histories part may arrive twice, with their ce_id. Users the restore or failover rolled back stay in Kafka. After a restore, move the id sequence past the largest id in Kafka before accepting writes (`streamer largest-id`; docs/operations.md, Restoring the database)")
}

func (s *Streamer) progressLog(pr delivery.Progress, start pglogrepl.LSN) *zerolog.Logger {
	l := s.log.With().Str("slot", s.cfg.Slot).Str("progress_commit_lsn", pr.CommitLSN).Uint32("progress_xid", pr.Xid).
		Str("progress_system_id", pr.SystemID).Int32("progress_timeline", pr.Timeline).Str("slot_position", start.String()).Logger()
	return &l
}

// commitID is the transaction a progress record names, as the replication
// stream names it; ok is false for a record that names none.
func commitID(pr delivery.Progress) (replication.CommitID, bool) {
	pos, ok := pr.Names()
	return replication.CommitID{LSN: pglogrepl.LSN(pos.LSN), Xid: pos.Xid, Time: pos.Time}, ok
}

// historyBears runs the check on the transaction a record is produced for:
// the session acknowledges again once it found the record's transaction,
// and ends when it found another in its place.
func (p *pipe) historyBears(t *delivery.Txn) error {
	if !p.check.pending {
		return nil
	}
	proved, err := p.check.bears(t.Commit)
	if err != nil {
		return p.s.disproved(p.resume, p.start, err)
	}
	if proved {
		p.held.Store(false)
		p.s.log.Info().Str("commit_lsn", pglogrepl.LSN(t.Commit.LSN).String()).Msg("exactly-once: the stream holds the last progress record's transaction; acknowledging again")
	}
	return nil
}

// historyPassed ends a session whose stream went past the record's
// position without its transaction.
func (p *pipe) historyPassed() error {
	if err := p.check.passed(p.reader.ServerWALEnd()); err != nil {
		return p.s.disproved(p.resume, p.start, err)
	}
	return nil
}
