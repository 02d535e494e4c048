package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/replication"
	"github.com/userstream/userstream/streamer"
)

// A slot made without failover (before PostgreSQL 17, before an upgrade,
// by hand) becomes a failover slot on 17+ at the streamer's next start,
// unless SLOT_FAILOVER is off; before 17 there is no such thing.
func TestAnExistingSlotBecomesAFailoverSlotFrom17OnUnlessTurnedOff(t *testing.T) {
	t.Parallel()
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("SLOT_FAILOVER=%v", !off), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.exec("SELECT pg_drop_replication_slot($1)", e.slot)
			e.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", e.slot)
			cfg := e.config(0)
			cfg.DisableSlotFailover = off
			stop, _ := e.inProcessWith(cfg)
			e.insertUsers("u", 0, 1)
			e2e.WaitFor(t, 30*time.Second, "the streamer to stream", func() bool { return e.topicSize() >= 1 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			conn, err := e.pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			st, err := replication.Slot(context.Background(), conn.Conn(), e.slot)
			if err != nil {
				t.Fatal(err)
			}
			major := replication.ServerMajor(conn.Conn().PgConn())
			if want := major >= replication.FailoverSlotsSince && !off; st.Failover != want {
				t.Errorf("PostgreSQL %d, SLOT_FAILOVER=%v: failover %v, want %v", major, !off, st.Failover, want)
			}
		})
	}
}

// The slot was streamed from a newer timeline of this cluster (after a
// failover): this server, on an older one, is refused, until an operator
// who restored it on purpose accepts it; accepting twice is harmless.
func TestAnOlderTimelineIsRefusedUntilAcceptedOnPurpose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	stop := e.inProcess(0)
	e.insertUsers("before", 0, 3)
	e2e.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.topicSize() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	id, err := replication.Identify(ctx, replication.Target{DSN: e.dsn})
	if err != nil {
		t.Fatal(err)
	}
	e.produceRecord("timeline/"+e.slot, fmt.Sprintf(`{"slot":%q,"system_id":%q,"timeline":%d}`, e.slot, id.SystemID, id.Timeline+1))

	e.insertUsers("meanwhile", 0, 5)
	s := streamer.New(e.config(0), zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = s.Run(rctx)
	cancel()
	if !errors.Is(err, streamer.ErrPermanent) || !strings.Contains(err.Error(), fmt.Sprintf("timeline %d", id.Timeline)) || !strings.Contains(err.Error(), "accept-timeline") {
		t.Fatalf("a server on an older timeline: %v; want a permanent stop naming the timelines and accept-timeline", err)
	}
	if got := e.topicSize(); got != 3 {
		t.Fatalf("%d records after the refusal, want the 3 from before: nothing may be streamed from the refused server", got)
	}
	for range 2 {
		if gotID, gotTimeline, err := s.AcceptTimeline(ctx); err != nil || gotID != id.SystemID || gotTimeline != id.Timeline {
			t.Fatalf("AcceptTimeline = %s, %d, %v; want %s, %d", gotID, gotTimeline, err, id.SystemID, id.Timeline)
		}
	}
	e.inProcess(0)
	e2e.WaitFor(t, 30*time.Second, "the users once the timeline is accepted", func() bool { return e.topicSize() >= 8 })
}
