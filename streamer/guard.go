package streamer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/userstream/userstream/checkpoint"
	"github.com/userstream/userstream/replication"
)

// guard re-checks, every GuardInterval, what the stream cannot show: that
// each projected table is still the same table and still published as the
// events need. A table renamed, swapped for another, or dropped from the
// publication sends nothing into the stream, while keepalives and other
// tables' commits would move the slot past its rows. So the position
// reported to PostgreSQL never passes the WAL position read before the last
// check that passed, and a failed check stops the streamer.
type guard struct {
	s           *Streamer
	target      replication.Target // the session's server
	tables      map[uint32]published
	safe        atomic.Uint64 // pglogrepl.LSN
	lifted      atomic.Bool   // the server is shutting down: no hold until a check passes again
	lastPass    time.Time
	lastWatch   time.Time // the slot's gauges are read once a second, not at every check
	lastWALWarn time.Time // rate-limits the warning about a slot about to be lost
	lastErrLog  time.Time // rate-limits the warning about failing checks
}

func newGuard(s *Streamer, p plan) *guard {
	g := &guard{s: s, target: p.target, tables: p.tables}
	g.safe.Store(uint64(p.checkedAt))
	return g
}

// Safe is the highest position the last passing check vouches for.
func (g *guard) Safe() pglogrepl.LSN {
	if g.lifted.Load() {
		return pglogrepl.LSN(math.MaxUint64)
	}
	return pglogrepl.LSN(g.safe.Load())
}

// serverShuttingDown lifts the hold when the server refuses connections
// because it is shutting down (SQLSTATE 57P03). A walsender then waits for
// its client to confirm everything sent before it exits, which a held-back
// position never does: the shutdown would hang for wal_sender_timeout. No
// transaction commits after the shutdown began, and a publication or table
// changed in the last interval before it is still found, and stops the
// streamer, by the checks of the next start.
func (g *guard) serverShuttingDown(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "57P03" {
		g.lifted.Store(true)
	}
}

// run checks until ctx ends, stop closes, or a check fails for good.
// Connection trouble only holds the safe position back: the session's own
// reconnects deal with an unreachable server.
func (g *guard) run(ctx context.Context, stop <-chan struct{}) error {
	t := time.NewTicker(g.s.cfg.GuardInterval)
	defer t.Stop()
	g.lastPass = time.Now()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = g.target.Connect(ctx); err != nil {
				conn = nil
				g.serverShuttingDown(err)
				g.s.metrics.GuardFailures.Inc()
				if since := time.Since(g.lastPass); since > guardPatience && !g.lifted.Load() {
					return fmt.Errorf("no publication check passed for %s: %w", since.Round(time.Second), err)
				}
				continue
			}
		}
		if err := g.check(ctx, conn); err != nil {
			if errors.Is(err, ErrPermanent) {
				return err
			}
			g.s.metrics.GuardFailures.Inc()
			// A check that keeps failing holds the slot back for good, until
			// PostgreSQL invalidates it: end the session (it is retried) so
			// the role and readiness say something is wrong.
			if since := time.Since(g.lastPass); since > guardPatience {
				return fmt.Errorf("no publication check passed for %s: %w", since.Round(time.Second), err)
			}
			if time.Since(g.lastErrLog) > 30*time.Second {
				g.lastErrLog = time.Now()
				g.s.log.Warn().Err(err).Msg("publication check failed; the reported position waits for the next one that passes")
			}
			conn.Close(context.Background())
			conn = nil
			continue
		}
		g.lastPass = time.Now()
		if time.Since(g.lastWatch) >= time.Second {
			g.lastWatch = time.Now()
			g.watchSlot(ctx, conn)
		}
	}
}

// guardPatience is how long checks may fail before the session ends.
const guardPatience = 30 * time.Second

// final checks once more at a clean stop, so the last position reported
// covers everything delivered.
func (g *guard) final(ctx context.Context) error {
	conn, err := g.target.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return g.check(ctx, conn)
}

// check reads the WAL position first, then the catalog: whatever the
// catalog shows was committed before the position, so a change it would
// reveal is never behind the position the check vouches for.
func (g *guard) check(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lsn, err := replication.CurrentWAL(ctx, conn)
	if err != nil {
		return err
	}
	for oid, want := range g.tables {
		spec := g.s.publicationSpec(want.pr)
		pt, err := replication.CheckPublication(ctx, conn, spec)
		switch {
		case errors.Is(err, replication.ErrPublication):
			return permanent(publicationError(err))
		case errors.Is(err, replication.ErrPublicationMissing):
			return permanent(publicationDroppedError(spec, err))
		case err != nil:
			return err
		case pt.OID != oid:
			return permanent(tableReplacedError(spec.Table, oid, pt.OID))
		case pt.Fingerprint != want.fingerprint:
			return permanent(publicationChangedError(spec, want.fingerprint, pt.Fingerprint))
		}
	}
	for {
		cur := g.safe.Load()
		if uint64(lsn) <= cur || g.safe.CompareAndSwap(cur, uint64(lsn)) {
			break
		}
	}
	g.lifted.Store(false)
	g.s.metrics.GuardPassed.SetToCurrentTime()
	return nil
}

// watchSlot warns while the slot is about to be lost: wal_status unreserved
// means PostgreSQL will remove WAL it still holds at the next checkpoint.
func (g *guard) watchSlot(ctx context.Context, conn *pgx.Conn) {
	st, err := replication.Slot(ctx, conn, g.s.cfg.Slot)
	if err != nil && !errors.Is(err, replication.ErrSlotLost) {
		return
	}
	g.s.metrics.observeSlot(st)
	if st.WALStatus == "unreserved" && time.Since(g.lastWALWarn) > time.Minute {
		g.lastWALWarn = time.Now()
		ev := g.s.log.Warn().Str("slot", g.s.cfg.Slot).Int64("lag_bytes", st.LagBytes)
		if st.SafeWALBytes != nil {
			ev = ev.Int64("safe_wal_size", *st.SafeWALBytes)
		}
		ev.Msg("slot wal_status is unreserved: PostgreSQL is about to remove WAL the slot needs; the streamer is falling behind (raise max_slot_wal_keep_size, or find why Kafka is slow)")
	}
}

// publicationDroppedError: PostgreSQL before 18 cannot decode a slot's WAL
// past the point where its publication was dropped, even once it is made
// again, so the slot has to go.
func publicationDroppedError(spec replication.PublicationSpec, err error) error {
	return fmt.Errorf("%w: publication %s was dropped: rows committed while it did not exist were NOT streamed, and the slot cannot decode past that point. To recover: stop every streamer; recreate it as the table's owner (%s); run `streamer drop-slot --yes`; start one streamer with CREATE_SLOT=true once; then run `streamer backfill --missing`",
		err, spec.Name, spec.CreateSQL())
}

func tableReplacedError(table string, was, now uint32) error {
	return fmt.Errorf("table %s is no longer the table being streamed (relation id %d, now %d): it was swapped for another table, or dropped and recreated. Rows of the new table were NOT streamed. Make sure the publication publishes the new table (as its owner: ALTER PUBLICATION … SET TABLE …), run `streamer backfill --missing`, then start the streamer",
		table, was, now)
}

// gate is the position source the reader reports from: the tracker's
// acknowledged position, held back to what the guard vouches for.
type gate struct {
	*checkpoint.Tracker
	guard *guard
	// held keeps the position at start while set: the session skipped
	// records on a progress record it has not yet found in this history.
	held  *atomic.Bool
	start pglogrepl.LSN
}

// Acked is the smallest of positions that only grow, so it only grows.
func (g gate) Acked() pglogrepl.LSN {
	acked := min(g.Tracker.Acked(), g.guard.Safe())
	if g.held.Load() {
		return min(acked, g.start)
	}
	return acked
}

var _ replication.Acker = gate{}
