package streamer_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/streamer"
)

func TestABackfillKilledHalfwayResumesAfterItsLastDurableChunk(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			const n = 40_000
			e.exec(`INSERT INTO users (username, country_code, created_at, api_version)
				SELECT 'old-' || g, 'FI', '2019-09-09 09:09:09', 'test' FROM generate_series(1, $1) g`, n)
			env := []string{"DATABASE_URL=" + e.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + e.kafka, "KAFKA_TOPIC=" + e.topic,
				"REPLICATION_SLOT=" + e.slot, "MIGRATE=false", "DELIVERY=" + mode}
			first := e2e.Start(t, "backfill", testenv.Bin(t, "streamer"), env, "backfill")
			e2e.WaitFor(t, time.Minute, "part of the backfill in Kafka", func() bool { return e.topicSize() >= 6_000 })
			first.Kill()
			// Users that arrive before it is run again: a backfill of every
			// user covers them too, not only the interrupted run's range.
			const later = 500
			e.exec(`INSERT INTO users (username, country_code, created_at, api_version)
				SELECT 'later-' || g, 'FI', '2019-09-09 09:09:09', 'test' FROM generate_series(1, $1) g`, later)
			again := e2e.Start(t, "backfill again", testenv.Bin(t, "streamer"), env, "backfill")
			if exited, err := again.Exited(3 * time.Minute); !exited || err != nil {
				t.Fatalf("the second backfill: exited %v, %v\n%s", exited, err, again.Output())
			}
			if !strings.Contains(again.Output(), "resuming after the last durable chunk") {
				t.Fatalf("the second backfill started over:\n%s", again.Output())
			}
			if mode == "exactly-once" {
				e.requireExactlyOnce(n + later)
				return
			}
			records := testenv.Consume(t, e.kafka, e.topic, n+later, 2*time.Minute, 3*time.Second)
			if byKey := checkContract(t, records, e.users()); len(byKey) != n+later {
				t.Fatalf("%d distinct users, want all %d", len(byKey), n+later)
			}
		})
	}
}

func TestABackfillOfAnIDRangeWhileInsertsStreamSendsTheRangeAgainWithItsCEIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.inProcess(0)
	e.insertUsers("streamed", 0, 200)
	e2e.WaitFor(t, 30*time.Second, "the streamed users", func() bool { return e.topicSize() >= 200 })
	wg := e.insertConcurrently("meanwhile", 2_000)
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	res, err := s.Backfill(context.Background(), streamer.BackfillRange{AfterID: 50, UpToID: 150, BatchSize: 7})
	if err != nil || res.Produced != 100 {
		t.Fatalf("backfill of ids 51-150: %+v, %v; want 100 events", res, err)
	}
	wg.Wait()
	records := testenv.Consume(t, e.kafka, e.topic, 2_300, time.Minute, 3*time.Second)
	byKey := checkContract(t, records, e.users())
	for id := 51; id <= 150; id++ {
		copies := byKey[strconv.Itoa(id)]
		if len(copies) < 2 {
			t.Fatalf("user %d has %d copies, want the streamed one and the backfilled one", id, len(copies))
		}
		for _, c := range copies[1:] {
			if c.Headers["ce_id"] != copies[0].Headers["ce_id"] {
				t.Fatalf("user %d: ce_id %q and %q", id, copies[0].Headers["ce_id"], c.Headers["ce_id"])
			}
		}
	}
	if len(byKey) != 2_200 {
		t.Fatalf("%d distinct users, want 2,200", len(byKey))
	}
}
