package streamer_test

import (
	"testing"
	"time"

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
