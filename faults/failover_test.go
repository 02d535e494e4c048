package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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

// statusShowsTheSyncedCopy runs `streamer status --json` against the
// standby: an operator checking readiness before a switchover sees the slot
// there, a failover slot, synced.
func (s *stack) statusShowsTheSyncedCopy(standby *testenv.Cluster) {
	s.t.Helper()
	p := e2e.Start(s.t, "streamer status", testenv.Bin(s.t, "streamer"), []string{
		"DATABASE_URL=" + testenv.WithDatabase(s.t, standby.DSN(), "userstream"), "REPLICATION_SLOT=" + s.slot,
		"KAFKA_BOOTSTRAP_SERVERS=" + s.broker.Addr(), "MIGRATE=false",
	}, "status", "--json")
	if exited, err := p.Exited(time.Minute); !exited || err != nil {
		s.t.Fatalf("streamer status on the standby: exited %v, %v\n%s", exited, err, p.Output())
	}
	var st struct {
		Exists   bool `json:"exists"`
		Failover bool `json:"failover"`
		Synced   bool `json:"synced"`
	}
	out := p.Output()
	if err := json.Unmarshal([]byte(out[max(strings.Index(out, "{\n"), 0):strings.LastIndex(out, "}")+1]), &st); err != nil || !st.Exists || !st.Failover || !st.Synced {
		s.t.Fatalf("streamer status on the standby: %+v, %v; want the slot there, a failover slot, synced:\n%s", st, err, out)
	}
}

// failOver crashes the primary under load and promotes the standby; see
// followPromotion.
func (s *stack) failOver(p *e2e.Process, old, standby *testenv.Cluster, load *e2e.Load, synced bool) (*e2e.Process, time.Duration, string) {
	s.t.Helper()
	failed := time.Now()
	old.Kill(s.t)
	standby.Promote(s.t)
	return s.followPromotion(p, failed, load, synced, "the crash")
}

// followPromotion follows what the streamer does after a promotion at
// since: it goes on with a synced failover slot, else it stops loudly and
// the stack follows the printed recovery. It returns the streamer that
// streams afterwards, the time to recover and a note.
func (s *stack) followPromotion(p *e2e.Process, since time.Time, load *e2e.Load, synced bool, what string) (*e2e.Process, time.Duration, string) {
	s.t.Helper()
	if !synced {
		stop := s.loudStop(p, since, "does not exist", "CREATE_SLOT=true", "backfill --missing")
		load.Wait()
		recovering, backfill := s.recoverWithBackfill(true)
		return recovering, 0, fmt.Sprintf("slot missing on the new primary: stopped %s after %s; after CREATE_SLOT=true once and `backfill --missing`: %s", stop.Round(10*time.Millisecond), what, summary(backfill))
	}
	s.users() // the pool's connections to the old primary fail once
	recovery := s.recovery(since)
	load.Wait()
	if exited, err := p.Exited(0); exited {
		s.t.Fatalf("the streamer stopped after %s: %v\n%s", what, err, p.Output())
	}
	return p, recovery, "went on from the synced failover slot on the promoted server, no operator"
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
			s.statusShowsTheSyncedCopy(b)
		}
		p, recovery, note := s.failOver(p, a, b, load, synced)
		s.finish(fmt.Sprintf("primary crash and failover under load (PostgreSQL %d)", major), load, recovery, note)

		// The old primary comes back as a standby of the new one, and a
		// planned switchover (a clean stop, then a promotion) moves the
		// primary back.
		a.Rejoin(t, b, "userstream", true)
		if synced {
			s.waitSynced(a)
		}
		load = e2e.StartLoad(s.api, "switchover", sc.rate, sc.rows/2)
		time.Sleep(time.Duration(sc.rows/6) * time.Second / time.Duration(sc.rate))
		switched := time.Now()
		b.Stop(t)
		a.Promote(t)
		_, recovery, note = s.followPromotion(p, switched, load, synced, "the switchover")
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
		_, _, note := s.failOver(p, a, b, load, false)
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
		p, _, _ = s.failOver(p, a, b, load, synced)
		s.caughtUp()
		if err := p.Stop(t, 30*time.Second); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}

		// The old primary comes back writable, as it was: a split brain. A
		// streamer given it first finds the slot there, and must refuse it.
		a.Start(t)
		s.usePrimaries(a, b)
		started := time.Now()
		refused := s.streamer(0)
		took := s.loudStop(refused, started, "former primary", "timeline", "target_session_attrs=read-write")

		// The recovery it printed: point DATABASE_URL at the current primary.
		// The old primary stays up: the new streamer must not reach it.
		s.usePrimaries(b)
		load = e2e.StartLoad(s.api, "after", sc.rate, sc.rows/3)
		again := s.streamer(0)
		e2e.WaitFor(t, time.Minute, "the streamer to hold the slot on the new primary", func() bool {
			var active bool
			err := s.pool.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&active)
			return err == nil && active
		})
		load.Wait()
		if exited, err := again.Exited(0); exited {
			t.Fatalf("the streamer on the new primary stopped: %v\n%s", err, again.Output())
		}
		s.finish(fmt.Sprintf("former primary back writable after a failover (PostgreSQL %d)", b.Major(t)), load, 0,
			fmt.Sprintf("refused its older timeline in %s; with DATABASE_URL at the new primary it went on", took.Round(10*time.Millisecond)))
	})
}
