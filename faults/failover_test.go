package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

// Failovers: a primary and a streaming physical standby, the streamer and
// the API given both hosts with target_session_attrs=read-write, as a
// team running Patroni or CloudNativePG would. From PostgreSQL 17 the slot
// is a failover slot that the standby keeps in sync: the streamer goes on
// from it on the promoted standby without an operator. Before 17, and on a
// standby that does not sync slots, the slot is missing after the failover:
// the streamer stops loudly and its printed recovery loses nothing.

// withStandby adds a standby to the stack and points the API, the
// streamers and the audit at both servers.
func (s *stack) withStandby(sync bool) *testenv.Cluster {
	s.t.Helper()
	standby := s.cluster.NewStandby(s.t, "userstream", sync)
	s.usePrimaries(s.cluster, standby)
	return standby
}

// usePrimaries points the API, the streamers and the audit at the hosts,
// the first writable one being the primary.
func (s *stack) usePrimaries(hosts ...*testenv.Cluster) {
	s.t.Helper()
	s.dsn = "postgres://postgres:postgres@"
	for i, h := range hosts {
		if i > 0 {
			s.dsn += ","
		}
		s.dsn += fmt.Sprintf("127.0.0.1:%d", h.Port())
	}
	s.dsn += "/userstream?sslmode=disable&target_session_attrs=read-write"
	cfg, err := pgxpool.ParseConfig(s.dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.pool.Close)
	s.api = e2e.StartAPI(s.t, s.pool)
}

// waitSynced waits until the standby holds a sync-ready copy of the slot.
func (s *stack) waitSynced(standby *testenv.Cluster) {
	s.t.Helper()
	e2e.WaitFor(s.t, 2*time.Minute, "the standby to hold a synced copy of the slot", func() bool {
		var ready bool
		err := standbyQuery(standby, "SELECT coalesce(bool_and(synced AND NOT temporary), false) FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&ready)
		return err == nil && ready
	})
}

func standbyQuery(c *testenv.Cluster, sql string, args ...any) interface{ Scan(...any) error } {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, c.DSN())
	if err != nil {
		return errRow{err}
	}
	defer pool.Close()
	var v bool
	err = pool.QueryRow(ctx, sql, args...).Scan(&v)
	return boolRow{v, err}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type boolRow struct {
	v   bool
	err error
}

func (r boolRow) Scan(dst ...any) error {
	if r.err == nil {
		*dst[0].(*bool) = r.v
	}
	return r.err
}

// failOver crashes the primary under load and promotes the standby, then
// follows what the streamer does: on with a synced failover slot, else a
// loud stop and its printed recovery. It returns the time to recover and a
// note.
func (s *stack) failOver(p *e2e.Process, old, standby *testenv.Cluster, load *e2e.Load, synced bool) (time.Duration, string) {
	s.t.Helper()
	failed := time.Now()
	old.Kill(s.t)
	standby.Promote(s.t)
	if !synced {
		stop := s.loudStop(p, failed, "does not exist", "CREATE_SLOT=true", "backfill --missing")
		load.Wait()
		_, backfill := s.recoverWithBackfill(true)
		return 0, fmt.Sprintf("slot missing on the new primary: stopped %s after the crash; after CREATE_SLOT=true once and `backfill --missing`: %s", stop.Round(10*time.Millisecond), summary(backfill))
	}
	s.users() // the pool's connections to the crashed primary fail once
	recovery := s.recovery(failed)
	load.Wait()
	if exited, err := p.Exited(0); exited {
		s.t.Fatalf("the streamer stopped after the failover: %v\n%s", err, p.Output())
	}
	return recovery, "went on from the synced failover slot on the promoted standby, no operator"
}

func TestAPrimaryFailoverUnderLoadAndASwitchoverBackLoseNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		a := s.cluster
		b := s.withStandby(true)
		major := a.Major(t)
		synced := major >= 17
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "failover", sc.rate, sc.rows/2)
		time.Sleep(time.Duration(sc.rows/6) * time.Second / time.Duration(sc.rate))
		if synced {
			s.waitSynced(b)
		}
		recovery, note := s.failOver(p, a, b, load, synced)
		s.finish(fmt.Sprintf("primary crash and failover under load (PostgreSQL %d)", major), load, recovery, note)

		// The old primary comes back as a standby of the new one, and a
		// planned switchover (a clean stop, then a promotion) moves the
		// primary back.
		a.Rejoin(t, b, "userstream", true)
		if synced {
			s.waitSynced(a)
		}
		if !synced {
			p = s.streamer(0) // the recovery's streamer holds the slot on b
		}
		load = e2e.StartLoad(s.api, "switchover", sc.rate, sc.rows/2)
		time.Sleep(time.Duration(sc.rows/6) * time.Second / time.Duration(sc.rate))
		switched := time.Now()
		b.Stop(t)
		a.Promote(t)
		if !synced {
			stop := s.loudStop(p, switched, "does not exist", "CREATE_SLOT=true")
			load.Wait()
			_, backfill := s.recoverWithBackfill(true)
			note = fmt.Sprintf("slot missing after the switchover: stopped %s after it; after CREATE_SLOT=true once and `backfill --missing`: %s", stop.Round(10*time.Millisecond), summary(backfill))
			recovery = 0
		} else {
			s.users()
			recovery = s.recovery(switched)
			load.Wait()
			if exited, err := p.Exited(0); exited {
				t.Fatalf("the streamer stopped after the switchover: %v\n%s", err, p.Output())
			}
			note = "went on from the synced failover slot on the old primary, no operator"
		}
		s.finish(fmt.Sprintf("failover, then switchover back (PostgreSQL %d)", major), load, recovery, note)
	})
}

func TestAFailoverToAStandbyThatDidNotSyncTheSlotStopsLoudlyAndIsRecovered(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		a := s.cluster
		b := s.withStandby(false)
		major := a.Major(t)
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "unsynced", sc.rate, sc.rows/2)
		time.Sleep(time.Duration(sc.rows/6) * time.Second / time.Duration(sc.rate))
		_, note := s.failOver(p, a, b, load, false)
		s.finish(fmt.Sprintf("failover to a standby without slot sync (PostgreSQL %d)", major), load, 0, note)
	})
}

func TestAFormerPrimaryThatComesBackWritableIsRefused(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		a := s.cluster
		b := s.withStandby(true)
		synced := a.Major(t) >= 17
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "splitbrain", sc.rate, sc.rows/3)
		time.Sleep(time.Duration(sc.rows/9) * time.Second / time.Duration(sc.rate))
		if synced {
			s.waitSynced(b)
		}
		_, _ = s.failOver(p, a, b, load, synced)
		s.caughtUp()

		// The old primary comes back writable, as it was: a split brain. A
		// streamer given it first finds the slot there, and must refuse it.
		a.Start(t)
		s.usePrimaries(a, b)
		started := time.Now()
		refused := s.streamer(0)
		took := s.loudStop(refused, started, "former primary", "timeline", "target_session_attrs=read-write")

		// The recovery it printed: point DATABASE_URL at the current primary.
		a.Stop(t)
		s.usePrimaries(b)
		load = e2e.StartLoad(s.api, "after", sc.rate, sc.rows/3)
		s.streamer(0)
		s.finish(fmt.Sprintf("former primary back writable after a failover (PostgreSQL %d)", b.Major(t)), load, 0,
			fmt.Sprintf("refused its older timeline in %s; with DATABASE_URL at the new primary it went on", took.Round(10*time.Millisecond)))
	})
}
