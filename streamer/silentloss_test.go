package streamer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/streamer"
)

// run starts an in-process streamer with cfg changed by edit, and returns
// its stop function.
func (e *env) run(edit func(*streamer.Config)) func() error {
	cfg := e.config(0)
	edit(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s := streamer.New(cfg, zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			done <- err
			return err
		case <-time.After(30 * time.Second):
			return errors.New("streamer did not stop within 30 s")
		}
	}
	e.t.Cleanup(func() { _ = stop() })
	return stop
}

// exitErr waits up to timeout for a streamer to stop by itself.
func exitErr(t *testing.T, stop func() error, timeout time.Duration) error {
	t.Helper()
	time.Sleep(timeout)
	return stop()
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func TestTheFirstRunCreatesTheSlotButARunAfterItWasDroppedRefusesToRecreateIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.exec("SELECT pg_drop_replication_slot($1)", e.slot)

	stop := e.inProcess(0)
	e2e.WaitFor(t, 30*time.Second, "the first run to create its slot", func() bool {
		var n int
		_ = e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", e.slot).Scan(&n)
		return n == 1
	})
	e.insertUsers("first-run", 0, 5)
	if got := testenv.Consume(t, e.kafka, e.topic, 5, 30*time.Second, time.Second); len(got) != 5 {
		t.Fatalf("%d records, want 5", len(got))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e.exec("SELECT pg_drop_replication_slot($1)", e.slot)
	e.insertUsers("while-dropped", 0, 3)
	err := exitErr(t, e.run(func(*streamer.Config) {}), 3*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "backfill --missing") {
		t.Fatalf("err = %v, want a permanent stop naming the recovery", err)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", e.slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d slots named %s (err %v), want none: it must not be recreated from now", n, e.slot, err)
	}

	// The documented recovery: CREATE_SLOT once, then backfill --missing.
	stop = e.run(func(c *streamer.Config) { c.CreateSlot = true })
	e2e.WaitFor(t, 30*time.Second, "the slot to be recreated", func() bool {
		_ = e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", e.slot).Scan(&n)
		return n == 1
	})
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	res, err := s.Backfill(context.Background(), streamer.BackfillRange{Missing: true, BatchSize: 2})
	if err != nil || res.Produced != 3 || res.Present != 5 {
		t.Fatalf("backfill --missing: %+v, err %v; want the 3 users inserted while the slot was gone, and 5 skipped", res, err)
	}
	records := testenv.Consume(t, e.kafka, e.topic, 8, 30*time.Second, 2*time.Second)
	byKey := checkContract(t, records, e.users())
	if len(byKey) != 8 || len(records) != 8 {
		t.Fatalf("%d records for %d users, want 8 for 8", len(records), len(byKey))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAStartLSNBeyondTheServersWALIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ahead := e.currentLSN() + 1<<30
	err := exitErr(t, e.inProcess(ahead), 3*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "beyond the server's current WAL position") {
		t.Fatalf("err = %v, want a refusal of a start LSN past the WAL", err)
	}
}

func TestADroppedPublicationStopsTheStreamerAndIsNeverRecreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	e.insertUsers("published", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 3 })
	e.exec("DROP PUBLICATION users_pub")
	e.insertUsers("unpublished", 0, 3)

	err := exitErr(t, stop, 8*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "backfill --missing") {
		t.Fatalf("err = %v, want a permanent stop naming the recovery", err)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_publication WHERE pubname = 'users_pub'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d publications (err %v), want the dropped one not recreated", n, err)
	}
}

func TestWithPoisonStopAPoisonRowStopsTheStreamerWithoutQuotingTheRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.run(func(c *streamer.Config) { c.Poison = streamer.PoisonStop })
	e.insertUsers("healthy", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the healthy users", func() bool { return e.topicSize() >= 3 })
	e.exec(`INSERT INTO users (username, country_code, created_at, api_version) VALUES ('secret-poison', 'BE', 'infinity', 'test')`)
	after := e.currentLSN()

	err := exitErr(t, stop, 4*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "created_at") || !strings.Contains(err.Error(), "POISON=dead-letter") {
		t.Fatalf("err = %v, want a permanent stop naming the column and the way on", err)
	}
	if strings.Contains(err.Error()+e.logs.String(), "secret-poison") {
		t.Fatalf("the poison row's value reached the error or the log")
	}
	if got := e.confirmedLSN(); got >= after {
		t.Errorf("slot confirmed %s, at or past the poison row (%s)", got, after)
	}
	if n := e.topicSize(); n != 3 {
		t.Errorf("%d records, want the 3 healthy users", n)
	}
}

func TestARenamedTableStopsTheStreamerBeforeItsRowsAreAcknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	e.insertUsers("before", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 3 })
	e.exec("ALTER TABLE users RENAME TO people")
	e.exec(`INSERT INTO people (username, country_code, created_at, api_version) VALUES ('renamed', 'BE', now(), 'test')`)
	after := e.currentLSN()

	err := exitErr(t, stop, 6*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "public.users") || !strings.Contains(err.Error(), "backfill --missing") {
		t.Fatalf("err = %v, want a permanent stop naming the table and the recovery", err)
	}
	if got := e.confirmedLSN(); got >= after {
		t.Errorf("slot confirmed %s, at or past the renamed table's insert (%s)", got, after)
	}
}

const addUsersBack = "ALTER PUBLICATION users_pub ADD TABLE users (id, username, country_code, created_at)"

func TestAPublicationChangeUndoneWhileNoStreamerRanStopsTheNextStartAndIsRecovered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	e.insertUsers("before", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Looks the same afterwards, but pgoutput decodes the gap without users.
	e.exec("ALTER PUBLICATION users_pub DROP TABLE users")
	e.insertUsers("gap", 0, 3)
	e.exec(addUsersBack)
	e.insertUsers("after", 0, 3)

	err := exitErr(t, e.run(func(*streamer.Config) {}), 4*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "changed") || !strings.Contains(err.Error(), "backfill --missing") {
		t.Fatalf("err = %v, want a permanent stop saying the publication changed and naming the recovery", err)
	}
	e.recoverByBackfill(9)
}

func TestAPublicationChangeUndoneBetweenTwoChecksStopsTheStreamer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Checks 2 s apart, so that the change and its undoing below (a few
	// milliseconds) fall between two of them: the fingerprint must catch it.
	cfg := e.config(0)
	cfg.GuardInterval = 2 * time.Second
	stop, _ := e.inProcessWith(cfg)
	e.insertUsers("before", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 3 })
	e.exec("ALTER PUBLICATION users_pub DROP TABLE users")
	e.insertUsers("gap", 0, 3)
	e.exec(addUsersBack)
	e.insertUsers("after", 0, 3)

	err := exitErr(t, stop, 4*time.Second)
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("err = %v, want a permanent stop saying the publication changed", err)
	}
	e.recoverByBackfill(9)
}

// recoverByBackfill follows the recovery a publication stop names:
// backfill --missing, then start the streamer; then every user is there.
func (e *env) recoverByBackfill(users int) {
	e.t.Helper()
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	if _, err := s.Backfill(context.Background(), streamer.BackfillRange{Missing: true}); err != nil {
		e.t.Fatalf("backfill --missing: %v", err)
	}
	e.inProcess(0)
	e.insertUsers("recovered", 0, 1)
	records := testenv.Consume(e.t, e.kafka, e.topic, users+1, time.Minute, 2*time.Second)
	if byKey := checkContract(e.t, records, e.users()); len(byKey) != users+1 {
		e.t.Fatalf("%d distinct users in the topic after the recovery, want all %d", len(byKey), users+1)
	}
}
