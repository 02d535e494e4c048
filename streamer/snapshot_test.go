package streamer_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/streamer"
)

// firstRun makes the env look like a database the streamer has never seen:
// users already exist, and there is no slot yet.
func (e *env) firstRun(existing int) {
	e.t.Helper()
	e.exec("SELECT pg_drop_replication_slot($1)", e.slot)
	e.exec(`INSERT INTO users (username, country_code, created_at, api_version)
		SELECT 'existing-' || g, 'PT', '2020-02-02 02:02:02', 'test' FROM generate_series(1, $1) g`, existing)
}

func TestTheFirstRunSendsTheUsersThatExistedBeforeItWhileStreaming(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.firstRun(10_000)
			c := e.child("DELIVERY=" + mode)
			e.insertConcurrently("during-snapshot", 10_000).Wait()
			e2e.WaitFor(t, 2*time.Minute, "the snapshot to complete", func() bool {
				return strings.Contains(c.Output(), "snapshot complete")
			})
			if mode == "exactly-once" {
				e.requireExactlyOnce(20_000)
				return
			}
			records := testenv.Consume(t, e.kafka, e.topic, 20_000, 2*time.Minute, 3*time.Second)
			byKey := checkContract(t, records, e.users())
			if len(byKey) != 20_000 {
				t.Fatalf("%d distinct users, want all 20,000", len(byKey))
			}
			for key, copies := range byKey {
				for _, r := range copies[1:] {
					if r.Headers["ce_id"] != copies[0].Headers["ce_id"] {
						t.Fatalf("user %s: copies carry ce_id %q and %q", key, copies[0].Headers["ce_id"], r.Headers["ce_id"])
					}
				}
			}
		})
	}
}

func TestASnapshotInterruptedBySIGKILLResumesFromItsLastDurableChunk(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.firstRun(60_000)
			c := e.child("DELIVERY=" + mode)
			e2e.WaitFor(t, time.Minute, "part of the snapshot in Kafka", func() bool { return e.topicSize() >= 8_000 })
			c.Kill()
			if strings.Contains(c.Output(), "snapshot complete") {
				t.Fatal("the snapshot completed before the SIGKILL: the scenario proves nothing")
			}
			again := e.child("DELIVERY=" + mode)
			e.insertConcurrently("after-kill", 2_000).Wait()
			e2e.WaitFor(t, 2*time.Minute, "the snapshot to complete", func() bool { return strings.Contains(again.Output(), "snapshot complete") })
			if !resumedAfter(again.Output()) {
				t.Fatalf("the restarted streamer did not resume the snapshot after its last durable chunk:\n%s", again.Output())
			}
			if mode == "exactly-once" {
				e.requireExactlyOnce(62_000)
				return
			}
			records := testenv.Consume(t, e.kafka, e.topic, 62_000, 2*time.Minute, 3*time.Second)
			if byKey := checkContract(t, records, e.users()); len(byKey) != 62_000 {
				t.Fatalf("%d distinct users, want all 62,000", len(byKey))
			}
		})
	}
}

// resumedAfter finds the restarted streamer's snapshot line and checks that
// it picked up after some rows, not from the start.
func resumedAfter(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "snapshot: sending the users") {
			return !strings.Contains(line, `"done":0,`) && strings.Contains(line, `"done":`)
		}
	}
	return false
}

// The snapshot follows the stream's policy for rows that make no valid
// event: with POISON=stop it stops on the row, naming the column and the
// way on but never the value, and sends no dead letter.
func TestWithPoisonStopTheSnapshotStopsAtAPoisonRowWithoutQuotingIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.firstRun(50)
	e.exec(`INSERT INTO users (username, country_code, created_at, api_version) VALUES ('secret-poison', 'BE', 'infinity', 'test')`)
	stop, finished := e.inProcessWith(func() streamer.Config {
		c := e.config(0)
		c.Poison = streamer.PoisonStop
		return c
	}())
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("the streamer kept going for a minute after the snapshot met a poison row with POISON=stop")
	}
	err := stop()
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), "created_at") || !strings.Contains(err.Error(), "POISON=dead-letter") {
		t.Fatalf("err = %v, want a permanent stop naming the column and the way on", err)
	}
	if strings.Contains(err.Error()+e.logs.String(), "secret-poison") {
		t.Fatal("the poison row's value reached the error or the log")
	}
	if n := e2e.TopicSize(t, e.kafka, e.topic+".dlq"); n != 0 {
		t.Fatalf("%d dead letters, want none with POISON=stop", n)
	}
}
