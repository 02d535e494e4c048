package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/streamer"
)

func TestEveryUserCreatedThroughTheAPIArrivesAsOneValidEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	base := e2e.StartAPI(t, e.pool)

	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"username":"api-user-%04d","country_code":"be","created_at":"2021-06-0%d 12:00:00","is_a_dog":true}`, i, 1+i%9)
			resp, err := http.Post(base+"/users", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create user: %v", err)
	}

	records := testenv.Consume(t, e.kafka, e.topic, n, 60*time.Second, 2*time.Second)
	if len(records) != n {
		t.Fatalf("%d records in %s, want exactly %d", len(records), e.topic, n)
	}
	byKey := checkContract(t, records, e.users())
	if len(byKey) != n {
		t.Fatalf("%d distinct keys, want %d", len(byKey), n)
	}
	if err := stop(); err != nil {
		t.Fatalf("streamer: %v", err)
	}
	if logs := e.logs.String(); strings.Contains(logs, "api-user-") {
		t.Errorf("a username appears in the streamer's logs")
	}
}

func TestAfterSIGTERMTheStreamerResumesWithNothingLostAndNothingRepeated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.child()
	e.insertUsers("before", 0, 100)
	e2e.WaitFor(t, 60*time.Second, "the first 100 events", func() bool { return e.topicSize() >= 100 })
	if err := first.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM exit: %v (want status 0)\n%s", err, first.Output())
	}

	e.insertUsers("while-down", 0, 500)
	e.child()
	records := testenv.Consume(t, e.kafka, e.topic, 600, 60*time.Second, 2*time.Second)
	if len(records) != 600 {
		t.Fatalf("%d records, want 100 before + 500 while down, none repeated", len(records))
	}
	byKey := checkContract(t, records, e.users())
	if len(byKey) != 600 {
		t.Fatalf("%d distinct users in the topic, want 600", len(byKey))
	}
}

func TestASIGKILLedStreamerLosesNothingAndDuplicatesKeepTheirCEID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.child()
	const n, writers = 5000, 4
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				_, err := e.pool.Exec(context.Background(),
					`INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'FR', '2022-02-02 02:02:02', 'test')`,
					fmt.Sprintf("crash-%d", i))
				if err != nil {
					t.Errorf("insert: %v", err)
					return
				}
			}
		}()
	}
	e2e.WaitFor(t, 60*time.Second, "some events before the crash", func() bool { return e.topicSize() >= 800 })
	c.Kill()
	e.child()
	wg.Wait()

	records := testenv.Consume(t, e.kafka, e.topic, n, 120*time.Second, 3*time.Second)
	byKey := checkContract(t, records, e.users())
	if len(byKey) != n {
		t.Fatalf("%d distinct users in the topic, want all %d", len(byKey), n)
	}
	dups := 0
	for key, copies := range byKey {
		for _, r := range copies[1:] {
			dups++
			if r.Headers["ce_id"] != copies[0].Headers["ce_id"] {
				t.Fatalf("user %s: copies carry ce_id %q and %q", key, copies[0].Headers["ce_id"], r.Headers["ce_id"])
			}
		}
	}
	t.Logf("%d users, %d records, %d duplicates after SIGKILL (each with its original's ce_id)", n, len(records), dups)
}

func TestStartLSNAheadOfTheSlotSkipsEarlierChangesAndBehindIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.insertUsers("skipped", 0, 20)
	from := e.currentLSN()
	e.insertUsers("replayed", 0, 30)

	stop := e.inProcess(from)
	records := testenv.Consume(t, e.kafka, e.topic, 30, 60*time.Second, 2*time.Second)
	if len(records) != 30 {
		t.Fatalf("%d records, want the 30 inserted after %s", len(records), from)
	}
	for _, r := range records {
		if strings.Contains(string(r.Value), "skipped-") {
			t.Fatalf("a change before the start LSN was streamed: %s", r.Value)
		}
	}
	checkContract(t, records, e.users())
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e2e.WaitFor(t, 20*time.Second, "the slot to confirm past the start LSN", func() bool { return e.confirmedLSN() > from })
	behind := e.inProcess(from - 1)
	err := waitErr(t, behind)
	if err == nil || !strings.Contains(err.Error(), "cannot replay behind a slot's confirmed position") || !strings.Contains(err.Error(), e.confirmedLSN().String()) {
		t.Fatalf("start behind the slot: err = %v, want the clear refusal naming the slot's position", err)
	}
}

// waitErr waits for an in-process streamer to stop by itself.
func waitErr(t *testing.T, stop func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second) // a refused start returns at once; this bounds the wait
		done <- stop()
	}()
	return <-done
}

func TestTheSlotAdvancesWhileIdleAndAfterEachDeliveredBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.inProcess(0)

	e.insertUsers("batch", 0, 10)
	afterBatch := e.currentLSN()
	e2e.WaitFor(t, 30*time.Second, "the slot to confirm the delivered batch", func() bool { return e.confirmedLSN() >= afterBatch })

	// WAL that makes no event (a table outside the publication): an idle
	// streamer must still let the slot move past it.
	if _, err := e.pool.Exec(context.Background(), "CREATE TABLE unrelated (n int); INSERT INTO unrelated SELECT generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	idle := e.currentLSN()
	e2e.WaitFor(t, 30*time.Second, "the idle slot to advance past unrelated WAL", func() bool { return e.confirmedLSN() >= idle })
}

func TestAOneTransactionOf200000InsertsStreamsWithBoundedMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.child()
	const n = 200_000
	_, err := e.pool.Exec(context.Background(), `INSERT INTO users (username, country_code, created_at, api_version)
		SELECT 'bulk-' || g, 'NL', '2023-03-03 03:03:03', 'test' FROM generate_series(1, $1) g`, n)
	if err != nil {
		t.Fatal(err)
	}
	end := e.currentLSN()
	start := time.Now()
	e2e.WaitFor(t, 5*time.Minute, "200,000 events and the slot past the transaction", func() bool {
		return e.topicSize() >= n && e.confirmedLSN() >= end
	})
	rss := c.PeakRSS(t)
	t.Logf("200,000-row transaction streamed in %s; streamer peak RSS %.1f MiB", time.Since(start).Round(time.Millisecond), float64(rss)/(1<<20))
	if got := e.topicSize(); got != n {
		t.Errorf("%d messages in the topic, want %d", got, n)
	}
	if rss > 256<<20 {
		t.Errorf("peak RSS %.1f MiB, want under 256 MiB: memory must not grow with the transaction", float64(rss)/(1<<20))
	}
}

func TestARenamedProjectedColumnStopsTheStreamerWithoutAcknowledgingTheChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	e.insertUsers("before-rename", 0, 5)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 5 })

	// PostgreSQL refuses to drop (without CASCADE) or retype a column in a
	// publication's column list, but a rename goes through: the next Relation
	// message no longer carries username.
	if _, err := e.pool.Exec(context.Background(), "ALTER TABLE users RENAME COLUMN username TO name"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(context.Background(), "INSERT INTO users (name, country_code, created_at, api_version) VALUES ('after-rename', 'BE', now(), 'test')"); err != nil {
		t.Fatal(err)
	}
	after := e.currentLSN()

	err := waitErr(t, stop)
	if err == nil || !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), `"username"`) {
		t.Fatalf("err = %v, want a permanent error naming column \"username\"", err)
	}
	if got := e.confirmedLSN(); got >= after {
		t.Errorf("slot confirmed %s, at or past the unprojectable insert (%s)", got, after)
	}
	if n := e.topicSize(); n != 5 {
		t.Errorf("%d messages, want the 5 from before the rename and no broken event", n)
	}
}

func TestSIGTERMDuringAKafkaOutageExitsWithinTheBoundAndLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	broker := e2e.StartBroker(t)
	e.kafka = broker.Addr()
	c := e.child("SHUTDOWN_TIMEOUT=3s")
	e.insertUsers("before-outage", 0, 10)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 10 })

	broker.Stop()
	// More than librdkafka's local queue holds (50,000 messages): the streamer
	// ends up blocked on backpressure.
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO users (username, country_code, created_at, api_version)
		SELECT 'outage-' || g, 'BE', now(), 'test' FROM generate_series(1, 60000) g`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	stopped := time.Now()
	if err := c.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM during the outage: %v (want exit status 0)", err)
	}
	if took := time.Since(stopped); took > 15*time.Second {
		t.Errorf("SIGTERM took %s, want about SHUTDOWN_TIMEOUT (3 s)", took)
	}

	broker.Start()
	e.child()
	e2e.WaitFor(t, 2*time.Minute, "every user after the outage", func() bool { return e.topicSize() >= 60010 })
	records := testenv.Consume(t, e.kafka, e.topic, 60010, 2*time.Minute, 2*time.Second)
	seen := map[string]bool{}
	for _, r := range records {
		seen[r.Key] = true
	}
	if len(seen) != 60010 {
		t.Fatalf("%d distinct users in the topic, want 60010", len(seen))
	}
}

func TestBackfillProducesEveryExistingUserWithAStableCEID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.insertUsers("existing", 0, 50)
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	ctx := context.Background()

	res, err := s.Backfill(ctx, streamer.BackfillRange{BatchSize: 7})
	if err != nil || res.Produced != 50 {
		t.Fatalf("backfill: %+v, err %v; want 50 events", res, err)
	}
	again, err := s.Backfill(ctx, streamer.BackfillRange{AfterID: 10, UpToID: 20})
	if err != nil || again.Produced != 10 {
		t.Fatalf("backfill of ids 11–20: %+v, err %v; want 10 events", again, err)
	}

	validate, err := projection.Validator(projection.UserCreatedType)
	if err != nil {
		t.Fatal(err)
	}
	rows := e.users()
	records := testenv.Consume(t, e.kafka, e.topic, 60, 60*time.Second, 2*time.Second)
	if len(records) != 60 {
		t.Fatalf("%d records, want 50 + 10", len(records))
	}
	ceid := map[string]string{}
	for _, r := range records {
		u, ok := rows[r.Key]
		if !ok {
			t.Fatalf("record key %q is no user id", r.Key)
		}
		if err := validate(r.Value); err != nil {
			t.Fatalf("record %s: %v", r.Key, err)
		}
		if want := fmt.Sprintf(`{"username":%q,"country_code":%q,"created_at":%q}`, u.username, u.countryCode, u.createdAt); string(r.Value) != want {
			t.Fatalf("record %s = %s, want %s", r.Key, r.Value, want)
		}
		if r.Headers["ce_id"] != "user.created.v1:"+r.Key || r.Headers["userstream_backfill"] != "true" || r.Headers["ce_type"] != "user.created.v1" {
			t.Fatalf("record %s headers %v", r.Key, r.Headers)
		}
		if prev, seen := ceid[r.Key]; seen && prev != r.Headers["ce_id"] {
			t.Fatalf("user %s backfilled twice with ce_id %q and %q", r.Key, prev, r.Headers["ce_id"])
		}
		// Every run makes the same headers: ce_time is the row's created_at.
		if r.Headers["ce_time"] != u.createdAt {
			t.Fatalf("user %s: backfilled ce_time %q, want its created_at %q", r.Key, r.Headers["ce_time"], u.createdAt)
		}
		ceid[r.Key] = r.Headers["ce_id"]
	}
	if len(ceid) != 50 {
		t.Fatalf("%d distinct users, want 50", len(ceid))
	}
}
