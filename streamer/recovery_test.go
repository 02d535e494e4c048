package streamer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/streamer"
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
			// Taken by Kafka, as the slot says (in exactly-once mode records
			// count in the topic before their transaction commits).
			delivered := e.currentLSN()
			e2e.WaitFor(t, 30*time.Second, "the first events to be confirmed", func() bool { return e.confirmedLSN() >= delivered })

			broker.Stop()
			// The first user of the outage, with the WAL position inside its
			// transaction: its commit comes after mark, so a slot confirmed
			// past mark would take it for delivered. (Heartbeat WAL written
			// between the stop and this insert may be confirmed: no user.)
			mark := e.firstUndelivered("during-outage-0")
			e.insertUsers("during-outage", 1, 19)
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
// lose them. The record names a commit past anything this server wrote, or
// a real commit position of this server with another transaction's xid.
func TestExactlyOnceSkipsNothingOnProgressFromAnotherHistory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		foreign func(e *env) string // the progress record's commit_lsn and xid
		how     string              // how the streamer found out
	}{
		{"past the server's WAL", func(*env) string { return `"commit_lsn":"FF/0","xid":4242` }, "the server's WAL is at"},
		{"another transaction at a real commit position", func(e *env) string {
			var begins []*pglogrepl.BeginMessage
			// The walsender decodes only flushed WAL (synchronous_commit is off here).
			e2e.WaitFor(e.t, 30*time.Second, "the inserts to be decodable", func() bool { begins = e.peekBegins(); return len(begins) >= 20 })
			begin := begins[9] // the tenth user inserted after the stop
			return fmt.Sprintf(`"commit_lsn":"%s","xid":%d`, begin.FinalLSN, begin.Xid+1000)
		}, "found xid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c := e.child("DELIVERY=exactly-once")
			e.insertUsers("before", 0, 5)
			e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 5 })
			if err := c.Stop(t, 30*time.Second); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			e.insertUsers("after", 0, 20)
			e.produceProgress(`{"slot":"` + e.slot + `",` + tc.foreign(e) + `,"records":1,"complete":true,"commit_time":"2020-01-01T00:00:00Z","system_id":"1","timeline":1}`)

			again := e.child("DELIVERY=exactly-once")
			e.requireExactlyOnce(25)
			if !strings.Contains(again.Output(), "does not hold at that position") || !strings.Contains(again.Output(), tc.how) {
				t.Errorf("the streamer did not say it ignored progress of another history:\n%s", again.Output())
			}
		})
	}
}

// peekBegins decodes the slot's pending stream without consuming it and
// returns its transactions' Begin messages.
func (e *env) peekBegins() []*pglogrepl.BeginMessage {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', 'users_pub') WHERE get_byte(data, 0) = 66`, e.slot)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var begins []*pglogrepl.BeginMessage
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			e.t.Fatal(err)
		}
		m, err := pglogrepl.Parse(data)
		if err != nil {
			e.t.Fatal(err)
		}
		begins = append(begins, m.(*pglogrepl.BeginMessage))
	}
	if rows.Err() != nil {
		e.t.Fatal(rows.Err())
	}
	return begins
}

// produceProgress writes value as the slot's progress record.
func (e *env) produceProgress(value string) { e.produceRecord(e.slot, value) }

// produceRecord writes one record to the progress topic.
func (e *env) produceRecord(key, value string) {
	e.t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.kafka, "log_level": 3})
	if err != nil {
		e.t.Fatal(err)
	}
	defer p.Close()
	topic := e.topic + ".progress"
	delivered := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key: []byte(key), Value: []byte(value)}, delivered); err != nil {
		e.t.Fatal(err)
	}
	if m := (<-delivered).(*kafka.Message); m.TopicPartition.Error != nil {
		e.t.Fatal(m.TopicPartition.Error)
	}
}

// After a restore the id sequence hands out ids that Kafka holds for other
// users; a recovery run then would take the new users for present.
func TestBackfillMissingRefusesWhileTheIDSequenceIsBehindKafka(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.inProcess(0)
	e.insertUsers("streamed", 0, 10)
	e2e.WaitFor(t, 30*time.Second, "the streamed users", func() bool { return e.topicSize() >= 10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var largest int64
	if err := e.pool.QueryRow(context.Background(), "SELECT max(id) FROM users").Scan(&largest); err != nil {
		t.Fatal(err)
	}
	e.exec("SELECT setval('users_id_seq', $1)", largest-5)
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	_, err := s.Backfill(context.Background(), streamer.BackfillRange{Missing: true})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("up to id %d", largest)) || !strings.Contains(err.Error(), "setval") {
		t.Fatalf("backfill --missing with the sequence behind Kafka: %v; want a refusal naming the setval", err)
	}
	e.exec("SELECT setval('users_id_seq', $1)", largest)
	res, err := s.Backfill(context.Background(), streamer.BackfillRange{Missing: true})
	if err != nil || res.Produced != 0 || res.Present != 10 {
		t.Fatalf("backfill --missing once the sequence is past Kafka: %+v, %v; want nothing to send", res, err)
	}
	if got, err := s.LargestID(context.Background()); err != nil || got != largest {
		t.Fatalf("LargestID = %d, %v; want %d", got, err, largest)
	}
}
