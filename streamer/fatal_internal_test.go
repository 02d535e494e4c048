package streamer

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/kafkaclient"
)

// The local broker no longer loses idempotent-producer state on SIGKILL, so
// this test makes librdkafka itself raise the fatal error a broker that lost
// it would cause (out-of-order sequence), against the real broker.
func TestAFatalProducerErrorRecreatesTheProducerAndLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, bootstrap, topic, slot := testenv.Postgres(t), testenv.Kafka(t), testenv.Topic(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	m := NewMetrics(prometheus.NewRegistry())
	s := New(Config{DatabaseURL: dsn, Slot: slot, Kafka: kafkaclient.Config{Topic: topic, Partitions: 3,
		Properties: map[string]string{"bootstrap.servers": bootstrap}}}, zerolog.Nop(), m)
	// The session's producer is the last one made before events flow:
	// prepare makes short-lived ones first, to look at the topics.
	var first atomic.Pointer[kafkaclient.Producer]
	s.newSink = func(c kafkaclient.Config) (*kafkaclient.Producer, error) {
		sink, err := kafkaclient.New(c)
		if err == nil {
			first.Store(sink)
		}
		return sink, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	insert := func(prefix string, n int) {
		for i := 0; i < n; i++ {
			if _, err := conn.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'BE', now(), 'test')`, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert("before", 300)
	e2e.WaitFor(t, 30*time.Second, "events before the fault", func() bool { return e2e.TopicSize(t, bootstrap, topic) >= 100 })
	first.Load().InjectFatalError()
	insert("after", 300)

	e2e.WaitFor(t, 60*time.Second, "a new producer to deliver everything", func() bool { return e2e.TopicSize(t, bootstrap, topic) >= 600 })
	if n := testutil.ToFloat64(m.Restarts); n < 1 {
		t.Errorf("session restarts = %v, want at least 1 after a fatal producer error", n)
	}
	records := testenv.Consume(t, bootstrap, topic, 600, 60*time.Second, 2*time.Second)
	seen := map[string]bool{}
	for _, r := range records {
		seen[r.Key] = true
	}
	if len(seen) != 600 {
		t.Fatalf("%d distinct users in the topic, want 600", len(seen))
	}
}
