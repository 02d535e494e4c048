package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

// The paths an operator takes after an incident: a restore of the
// database, a recovery whose first streamer dies, a backfill re-run in a
// later incident, a recovery that meets a dead-lettered row. Each ends with
// 0 rows missing, after at most the recovery the streamer printed.

// caughtUp waits until the slot confirms everything committed so far: every
// user is in Kafka.
func (s *stack) caughtUp() {
	s.t.Helper()
	var mark string
	s.retry("read the WAL position", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&mark)
	})
	e2e.WaitFor(s.t, 2*time.Minute, "the slot to confirm every committed user", func() bool {
		var done bool
		err := s.pool.QueryRow(context.Background(),
			"SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $2", mark, s.slot).Scan(&done)
		return err == nil && done
	})
}

// users counts the table's rows and reads its largest id.
func (s *stack) users() (n int, maxID int64) {
	s.t.Helper()
	s.retry("count the users", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, "SELECT count(*), coalesce(max(id), 0) FROM users").Scan(&n, &maxID)
	})
	return n, maxID
}

// retry runs f until it succeeds: the pool's connections from before a
// PostgreSQL restart fail once.
func (s *stack) retry(what string, f func(ctx context.Context) error) {
	s.t.Helper()
	var err error
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("%s: %v", what, err)
}

// backupAndRollBack streams some users, copies the stopped data directory,
// streams more (all of them reach Kafka), then restores the copy, with or
// without its replication slots, and moves the id sequence past the
// largest id in Kafka as docs/operations.md says. It records how many
// users the restore took back, and returns when the restore was done.
func (s *stack) backupAndRollBack(sc scale, withSlots bool) time.Time {
	s.t.Helper()
	e2e.StartLoad(s.api, "kept", sc.rate, sc.rows/10).Wait()
	s.caughtUp()
	s.cluster.Stop(s.t)
	backup := s.cluster.Copy(s.t)
	s.cluster.Start(s.t)
	e2e.StartLoad(s.api, "rolledback", sc.rate, sc.rows/3).Wait()
	s.caughtUp()
	before, maxID := s.users()
	s.cluster.Stop(s.t)
	s.cluster.Restore(s.t, backup, withSlots)
	restored := time.Now()
	s.cluster.Start(s.t)
	after, _ := s.users()
	s.rolledBack = before - after
	if s.rolledBack == 0 {
		s.t.Fatal("the restore took back no user: the scenario proves nothing")
	}
	s.retry("move the id sequence", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, "SELECT setval('users_id_seq', $1)", maxID)
		return err
	})
	return restored
}

func TestARestoreFromACopyWithTheSlotLosesNoUserWrittenAfterIt(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		restored := s.backupAndRollBack(sc, true)
		// The restored slot is behind the progress in Kafka, and the WAL after
		// the copy's end is new: positions the progress names now hold other
		// users.
		s.repeats = "the restored slot replays what it had not confirmed when the copy was taken"
		load := e2e.StartLoad(s.api, "after", sc.rate, sc.rows/5)
		recovery := s.recovery(restored)
		load.Wait()
		if exited, err := p.Exited(0); exited {
			t.Fatalf("the streamer stopped after the restore: %v\n%s", err, p.Output())
		}
		note := fmt.Sprintf("%d users rolled back by the restore stay in Kafka; the streamer went on by itself", s.rolledBack)
		if s.mode() == "exactly-once" {
			if !strings.Contains(p.Output(), "does not hold at that position") {
				t.Errorf("exactly-once did not say it found progress of another history:\n%s", p.Output())
			}
			note += "; exactly-once found its progress was no longer in this history and skipped nothing on it"
		}
		s.finish("database restored from a file-system copy (slot included), sequence moved past Kafka", load, recovery, note)
	})
}

func TestARestoreFromABaseBackupIsRecoveredEvenWhenTheRecoveringStreamerIsKilled(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		// A base backup holds no slot: after the restore the slot is gone, and
		// the streamer must stop.
		restored := s.backupAndRollBack(sc, false)
		load := e2e.StartLoad(s.api, "after", sc.rate/4, sc.rows/2)
		stop := s.loudStop(p, restored, "does not exist", "NOT streamed", "CREATE_SLOT=true", "backfill --missing")

		// The recovery's first streamer creates the slot and dies before its
		// first Kafka commit could record anything of it.
		first := s.streamer(0, "CREATE_SLOT=true")
		e2e.WaitFor(t, time.Minute, "the recovering streamer to create the slot", func() bool {
			var n int
			err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&n)
			return err == nil && n == 1
		})
		first.Kill()
		// Without CREATE_SLOT, as the recovery says; users keep arriving.
		again := s.streamer(0)
		e2e.WaitFor(t, time.Minute, "the streamer to hold the new slot", func() bool {
			var active bool
			err := s.pool.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&active)
			return err == nil && active
		})
		// Users the new slot streams, committed at positions the progress of
		// the rolled-back history also names.
		e2e.StartLoad(s.api, "streamed", sc.rate, sc.rows/10).Wait()
		// The backfill after the load: users streamed while it runs may arrive
		// twice (same ce_id), which would hide a duplicate of another cause.
		load.Wait()
		s.caughtUp()
		out := s.command("backfill", "--missing")
		if exited, err := again.Exited(0); exited {
			t.Fatalf("the streamer stopped after the recovery: %v\n%s", err, again.Output())
		}
		s.finish("restored from a base backup (no slot), recovery's first streamer SIGKILLed after creating the slot", load, 0,
			fmt.Sprintf("stopped %s after the restore; %d users rolled back stay in Kafka; after CREATE_SLOT=true (killed), a plain start and `backfill --missing`: %s",
				stop.Round(10*time.Millisecond), s.rolledBack, summary(lastLine(out))))
	})
}

// dropSlotAndMiss stops the streamer, drops the slot, lets users arrive
// that no slot sees, and checks that the next start stops loudly.
func (s *stack) dropSlotAndMiss(p *e2e.Process, prefix string, n int) {
	s.t.Helper()
	if err := p.Stop(s.t, 30*time.Second); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	s.exec("SELECT pg_drop_replication_slot($1)", s.slot)
	e2e.StartLoad(s.api, prefix, 500, n).Wait()
	started := time.Now()
	s.loudStop(s.streamer(0), started, "does not exist", "backfill --missing")
}

func TestABackfillInterruptedInOneIncidentDoesNotHideTheNextIncidentsUsers(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		e2e.StartLoad(s.api, "streamed", sc.rate, sc.rows/3).Wait()

		// Incident 1: the slot is lost; its backfill stops half-way (here on a
		// poison row with POISON=stop, after its first chunks were durable)
		// and is never run again.
		s.dropSlotAndMiss(p, "incident1", sc.rows/10)
		s.exec(`INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-lower', 'be', now(), 'test')`)
		recovering := s.streamer(0, "CREATE_SLOT=true")
		s.caughtUpOnce()
		half := e2e.Start(t, "streamer backfill", testenv.Bin(t, "streamer"), []string{
			"DATABASE_URL=" + s.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + s.broker.Addr(), "KAFKA_TOPIC=" + s.topic,
			"REPLICATION_SLOT=" + s.slot, "MIGRATE=false", "DELIVERY=" + s.mode(), "POISON=stop",
		}, "backfill", "--missing")
		if exited, err := half.Exited(2 * time.Minute); !exited || err == nil || !strings.Contains(half.Output(), "POISON=stop is set") {
			t.Fatalf("the first backfill: exited %v, %v; want it to stop on the poison row\n%s", exited, err, half.Output())
		}

		// Incident 2, later: the slot is lost again; the new backfill must
		// cover this incident's users, not resume the first one's range.
		s.dropSlotAndMiss(recovering, "incident2", sc.rows/10)
		s.streamer(0, "CREATE_SLOT=true")
		s.caughtUpOnce()
		out := s.command("backfill", "--missing")
		if !strings.Contains(out, "an earlier --missing run was interrupted") {
			t.Errorf("the second backfill did not find the first one's interrupted job, so the scenario proves nothing:\n%s", out)
		}
		backfill := lastLine(out)
		if !strings.Contains(backfill, `"poison_rows":1`) {
			t.Errorf("the poison row did not go to the dead-letter topic: %s", backfill)
		}
		s.exec("DELETE FROM users WHERE username = 'poison-lower'")
		s.finish("`backfill --missing` interrupted in incident 1, run again in incident 2", nil, 0,
			"the second run recomputed its range instead of resuming the first's; the poison row went to the dead-letter topic: "+summary(backfill))
	})
}

// lastLine is a command's last log line: its report.
func lastLine(out string) string {
	out = strings.TrimRight(out, "\n")
	return strings.TrimSpace(out[strings.LastIndex(out, "\n")+1:])
}

// caughtUpOnce waits until a streamer holds the slot and has confirmed
// everything committed so far.
func (s *stack) caughtUpOnce() {
	s.t.Helper()
	e2e.WaitFor(s.t, time.Minute, "a streamer to hold the slot", func() bool {
		var active bool
		err := s.pool.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&active)
		return err == nil && active
	})
	s.caughtUp()
}

func TestARecoveryFinishesWhenARowIsAlreadyOnTheDeadLetterTopic(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "deadletter", sc.rate, sc.rows/3)
		var poisonID int64
		s.retry("insert a poison row", func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-lower', 'be', now(), 'test') RETURNING id`).Scan(&poisonID)
		})
		load.Wait()
		if dead := testenv.Consume(t, s.broker.Addr(), s.topic+".dlq", 1, time.Minute, time.Second); len(dead) != 1 || dead[0].Key != fmt.Sprint(poisonID) {
			t.Fatalf("dead letters %v, want the poison row %d", dead, poisonID)
		}
		// While no streamer runs, a row filter is added and removed: the
		// publication looks right, but rows in between were not decoded.
		if err := p.Stop(t, 30*time.Second); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		s.exec(`ALTER PUBLICATION users_pub SET TABLE users (id, username, country_code, created_at) WHERE (username NOT LIKE '%5')`)
		e2e.StartLoad(s.api, "filtered", 500, sc.rows/10).Wait()
		s.exec(`ALTER PUBLICATION users_pub SET TABLE users (id, username, country_code, created_at)`)
		started := time.Now()
		stop := s.loudStop(s.streamer(0), started, "changed", "backfill --missing")

		// Rows committed while the streamer was stopped are both backfilled
		// and replayed by the slot.
		s.repeats = "the recovery backfills rows the slot then streams too"
		_, backfill := s.recoverWithBackfill(false)
		if !strings.Contains(backfill, `"poison_rows":0`) {
			t.Errorf("the backfill sent the dead-lettered row again: %s", backfill)
		}
		s.exec("DELETE FROM users WHERE id = $1", poisonID)
		s.finish("publication changed and changed back while stopped, a row already on the dead-letter topic", nil, 0,
			fmt.Sprintf("stopped %s after the start; `backfill --missing` counted the dead-lettered row as accounted for and finished: %s", stop.Round(10*time.Millisecond), summary(backfill)))
	})
}
