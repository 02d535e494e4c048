package streamer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/internal/e2e"
)

// Other Go CDC tools have shipped standby status updates that carried a
// zero or defaulted position and moved the slot past what was delivered.
// Here every reported position comes from delivered data: while Kafka is
// down, keepalives (and heartbeat WAL) keep arriving, and the slot must not
// move past the first user Kafka has not taken, in either mode.
func TestDuringAKafkaOutageTheSlotIsNeverConfirmedPastAnUndeliveredUser(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			broker := e2e.StartBroker(t)
			e.kafka = broker.Addr()
			e.child("DELIVERY="+mode, "HEARTBEAT_INTERVAL=100ms")
			e.insertUsers("before-outage", 0, 10)
			e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 10 })

			broker.Stop()
			mark := e.currentLSN()
			e.insertUsers("during-outage", 0, 20)
			for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if confirmed := e.confirmedLSN(); confirmed > mark {
					t.Fatalf("the slot confirmed %s during the outage, past %s, before which the first undelivered user commits", confirmed, mark)
				}
			}
			broker.Start()
			e2e.WaitFor(t, time.Minute, "the slot to move past the outage's users once Kafka took them", func() bool { return e.confirmedLSN() > mark })
			if got := len(e.users()); got != 30 {
				t.Fatalf("%d users in the table, want 30", got)
			}
		})
	}
}

// A progress record made in another history (before a restore, on the
// primary before a failover, by another cluster's streamer of the same slot
// name) names positions that here hold other users: skipping on it would
// lose them. Here it names a commit far past anything this server wrote.
func TestExactlyOnceSkipsNothingOnProgressFromAnotherHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.child("DELIVERY=exactly-once")
	e.insertUsers("before", 0, 5)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 5 })
	if err := c.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.kafka, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := e.topic + ".progress"
	foreign := `{"slot":"` + e.slot + `","commit_lsn":"FF/0","records":1,"complete":true,"xid":4242,"commit_time":"2020-01-01T00:00:00Z","system_id":"1","timeline":1}`
	delivered := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key: []byte(e.slot), Value: []byte(foreign)}, delivered); err != nil {
		t.Fatal(err)
	}
	if m := (<-delivered).(*kafka.Message); m.TopicPartition.Error != nil {
		t.Fatal(m.TopicPartition.Error)
	}

	e.insertUsers("after", 0, 20)
	again := e.child("DELIVERY=exactly-once")
	e.requireExactlyOnce(25)
	if !strings.Contains(again.Output(), "does not hold at that position") {
		t.Errorf("the streamer did not say it ignored progress of another history:\n%s", again.Output())
	}
}
