package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/streamer"
)

// readCommitted reads the topic as an exactly-once consumer must, and fails
// unless every user of the table is there exactly once.
func (e *env) requireExactlyOnce(n int) {
	e.t.Helper()
	records := testenv.ConsumeWith(e.t, map[string]string{"bootstrap.servers": e.kafka, "isolation.level": "read_committed"},
		e.topic, n, 2*time.Minute, 3*time.Second)
	byKey := checkContract(e.t, records, e.users())
	if len(byKey) != n || len(records) != n {
		e.t.Fatalf("%d records for %d distinct users, want each of the %d users exactly once", len(records), len(byKey), n)
	}
}

// insertConcurrently inserts n users from 4 connections, one transaction each.
func (e *env) insertConcurrently(prefix string, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				_, err := e.pool.Exec(context.Background(),
					`INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'FR', '2022-02-02 02:02:02', 'test')`,
					fmt.Sprintf("%s-%d", prefix, i))
				if err != nil {
					e.t.Errorf("insert: %v", err)
					return
				}
			}
		}()
	}
	return &wg
}

func TestExactlyOnceThreeSIGKILLsLeaveEveryUserOnceForAReadCommittedConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.child("DELIVERY=exactly-once")
	const n = 6000
	wg := e.insertConcurrently("eos-kill", n)
	for k := 1; k <= 3; k++ {
		e2e.WaitFor(t, time.Minute, "events before the next crash", func() bool { return e.topicSize() >= int64(k*1200) })
		c.Kill()
		c = e.child("DELIVERY=exactly-once")
	}
	wg.Wait()
	e.requireExactlyOnce(n)
}

func TestExactlyOnceResumesInsideALargeTransactionWithoutRepeatingItsFirstPart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.child("DELIVERY=exactly-once")
	const n = 60_000
	e.exec(`INSERT INTO users (username, country_code, created_at, api_version)
		SELECT 'big-' || g, 'NL', '2023-03-03 03:03:03', 'test' FROM generate_series(1, $1) g`, n)
	// Kafka transactions hold at most 10,000 records: kill the streamer
	// after some of them committed, inside the one PostgreSQL transaction.
	e2e.WaitFor(t, time.Minute, "part of the transaction in Kafka", func() bool { return e.topicSize() >= 25_000 })
	c.Kill()
	e.child("DELIVERY=exactly-once")
	e.requireExactlyOnce(n)
}

func TestAnExactlyOnceZombieIsFencedWhenTheStandbyTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A short wal_sender_timeout, so PostgreSQL gives up on the frozen
	// streamer's connection within seconds.
	dsn := e2e.WithServerOption(t, e.dsn, "wal_sender_timeout=2s")
	a := e.child("DELIVERY=exactly-once", "DATABASE_URL="+dsn)
	e2e.WaitFor(t, 30*time.Second, "streamer A active", func() bool { return strings.Contains(a.Output(), `"message":"streaming"`) })
	b := e.child("DELIVERY=exactly-once", "DATABASE_URL="+dsn)
	const n = 4000
	wg := e.insertConcurrently("zombie", n)
	e2e.WaitFor(t, time.Minute, "events before the freeze", func() bool { return e.topicSize() >= 1000 })

	a.Signal(t, syscall.SIGSTOP)
	e2e.WaitFor(t, time.Minute, "standby B to take over", func() bool { return strings.Contains(b.Output(), `"message":"streaming"`) })
	time.Sleep(2 * time.Second) // B streams and commits while A is frozen
	a.Signal(t, syscall.SIGCONT)
	wg.Wait()
	e.requireExactlyOnce(n)
	// Whether the thawed streamer found its connection to PostgreSQL gone or
	// its Kafka transaction fenced first, it must have committed nothing
	// more: the exact count above is the proof.
	t.Logf("thawed streamer fenced by Kafka: %v", strings.Contains(strings.ToLower(a.Output()), "fenced"))
	if exited, err := b.Exited(0); exited {
		t.Fatalf("streamer B exited: %v", err)
	}
}

func TestExactlyOnceStopsNamingTheCauseWhenKafkaRefusesARecordForGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A topic whose batches may not exceed 64 bytes: the broker refuses
	// every event. There is no report per record in this mode: the
	// transaction's own error must say why, and stop the first session.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": e.kafka})
	if err != nil {
		t.Fatal(err)
	}
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: e.topic, NumPartitions: 3, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": "64"}}})
	admin.Close()
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create the topic: %v %v", err, res)
	}
	e.insertUsers("refused", 0, 3)
	after := e.currentLSN()

	cfg := e.config(0)
	cfg.Delivery = streamer.ExactlyOnce
	stop, finished := e.inProcessWith(cfg)
	select {
	case <-finished:
	case <-time.After(90 * time.Second):
		t.Fatal("the streamer kept going (or retrying) for 90 s after Kafka refused its records for good")
	}
	err = stop()
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "for good") || !strings.Contains(strings.ToLower(err.Error()), "too large") {
		t.Fatalf("err = %v, want a permanent error saying the records are too large", err)
	}
	if got := e.confirmedLSN(); got >= after {
		t.Errorf("slot confirmed %s, at or past the refused inserts (%s)", got, after)
	}
	if n := strings.Count(e.logs.String(), `"message":"streaming"`); n != 1 {
		t.Errorf("%d sessions streamed, want the first to stop for good", n)
	}
}
