package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
)

func TestStreamerSIGKILLedAtRandomMomentsLosesNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "kill", sc.rate, sc.rows)
		span := time.Duration(sc.rows) * time.Second / time.Duration(sc.rate)
		var worst time.Duration
		for k := 0; k < sc.kills; k++ {
			time.Sleep(time.Duration(rand.Int64N(int64(span/time.Duration(sc.kills)))) + 200*time.Millisecond)
			p.Kill()
			p = s.streamer(0)
			worst = max(worst, s.recovery(time.Now()))
		}
		s.finish("streamer SIGKILL ×"+fmt.Sprint(sc.kills), load, worst, "worst of the restarts")
	})
}

func TestStandbyTakesOverWhenTheActiveStreamerIsKilled(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		portA, portB := e2e.FreePort(t), e2e.FreePort(t)
		a := s.streamer(portA)
		e2e.WaitFor(t, 30*time.Second, "streamer A active", func() bool { return role(portA) == "active" })
		s.streamer(portB)
		e2e.WaitFor(t, 30*time.Second, "streamer B on standby", func() bool { return role(portB) == "standby" })

		load := e2e.StartLoad(s.api, "takeover", sc.rate, sc.rows)
		time.Sleep(time.Duration(sc.rows/2) * time.Second / time.Duration(sc.rate))
		killed := time.Now()
		a.Kill()
		recovery := s.recovery(killed)
		e2e.WaitFor(t, 30*time.Second, "streamer B active", func() bool { return role(portB) == "active" })
		s.finish("SIGKILL active streamer, standby takes over", load, recovery, "from the kill")
	})
}

func TestPostgresRestartMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		s.streamer(0)
		load := e2e.StartLoad(s.api, "pgrestart", sc.rate, sc.rows)
		time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
		s.cluster.Stop(t)
		time.Sleep(time.Second)
		s.cluster.Start(t)
		recovery := s.recovery(time.Now())
		s.finish("PostgreSQL restart (fast shutdown)", load, recovery, fmt.Sprintf("API answered 503 %d times while it was down", load.Unavailable.Load()))
	})
}

func TestBrokerStoppedForAWhileLosesNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "brokerstop", sc.rate, sc.rows)
		time.Sleep(time.Duration(sc.rows/4) * time.Second / time.Duration(sc.rate))
		s.broker.Stop()
		time.Sleep(sc.outage)
		s.broker.Start()
		recovery := s.recovery(time.Now())
		if exited, err := p.Exited(0); exited {
			t.Fatalf("streamer exited during the outage: %v", err)
		}
		s.finish(fmt.Sprintf("broker stopped (SIGTERM) for %s", sc.outage), load, recovery, "streamer kept running")
	})
}

func TestBrokerSIGKILLedForcesANewProducerAndLosesNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		p := s.streamer(0)
		load := e2e.StartLoad(s.api, "brokerkill", sc.rate, sc.rows)
		time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
		s.broker.Kill()
		s.broker.Start()
		recovery := s.recovery(time.Now())
		load.Wait()
		restarts := strings.Count(p.Output(), "stream interrupted")
		s.finish("broker SIGKILL, restarted at once", load, recovery, fmt.Sprintf("%d streamer session restarts", restarts))
	})
}

func TestAColumnAddedMidStreamNeverReachesKafka(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	p := s.streamer(0)
	load := e2e.StartLoad(s.api, "alter", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/2) * time.Second / time.Duration(sc.rate))
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, "ALTER TABLE users ADD COLUMN favourite_food text DEFAULT 'secret-bones'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := s.pool.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version, favourite_food)
			VALUES ($1, 'BE', now(), 'test', 'secret-bones')`, fmt.Sprintf("with-food-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	load.Wait()
	if exited, err := p.Exited(0); exited {
		t.Fatalf("streamer stopped after ADD COLUMN: %v", err)
	}
	s.finish("ALTER TABLE users ADD COLUMN mid-stream", load, 0, "streamer kept running; the new column never left PostgreSQL")
}

func TestAHugeTransactionStreamsInBoundedMemory(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	p := s.streamer(0)
	ctx := context.Background()
	started := time.Now()
	_, err := s.pool.Exec(ctx, `INSERT INTO users (username, country_code, created_at, is_a_dog, api_version)
		SELECT 'huge-' || g, 'NL', '2023-03-03 03:03:03', true, 'test' FROM generate_series(1, $1) g`, sc.huge)
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 10*time.Minute, "the whole transaction in Kafka", func() bool { return s.size() >= int64(sc.huge) })
	took := time.Since(started)
	rss := p.PeakRSS(t)
	if rss > 256<<20 {
		t.Errorf("peak RSS %.1f MiB, over the 256 MiB bound", float64(rss)/(1<<20))
	}
	s.finish(fmt.Sprintf("one transaction of %d inserts (no API load)", sc.huge), nil, 0,
		fmt.Sprintf("streamer peak RSS %.1f MiB; streamed in %s", float64(rss)/(1<<20), took.Round(100*time.Millisecond)))
}

func TestALostSlotStopsTheStreamerWithAClearError(t *testing.T) {
	t.Parallel()
	s := newStack(t, "max_slot_wal_keep_size = 32MB")
	p := s.streamer(0)
	load := e2e.StartLoad(s.api, "lost", 200, 200)
	load.Wait()
	e2e.WaitFor(t, time.Minute, "the first events", func() bool { return s.size() >= 200 })
	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// WAL grows past max_slot_wal_keep_size while the streamer is down.
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, "CREATE TABLE junk (x text)"); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 2*time.Minute, "PostgreSQL to invalidate the slot", func() bool {
		_, err := s.pool.Exec(ctx, "INSERT INTO junk SELECT repeat('x', 1000) FROM generate_series(1, 20000); SELECT pg_switch_wal(); CHECKPOINT")
		if err != nil {
			t.Fatal(err)
		}
		var status string
		_ = s.pool.QueryRow(ctx, "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&status)
		return status == "lost"
	})

	started := time.Now()
	again := s.streamer(0)
	exited, err := again.Exited(time.Minute)
	if !exited || err == nil {
		t.Fatalf("streamer on a lost slot: exited=%v err=%v, want a failing exit", exited, err)
	}
	out := again.Output()
	for _, want := range []string{"invalidated", "NOT streamed", "drop-slot", "CREATE_SLOT=true", "backfill --missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	refused := time.Since(started)
	// The documented recovery: drop the lost slot, create a new one once, and
	// send every user the topic lacks.
	load = e2e.StartLoad(s.api, "lost-after", 200, 200)
	s.command("drop-slot", "--yes")
	load.Wait()
	_, backfill := s.recoverWithBackfill(true)
	s.finish("slot invalidated (max_slot_wal_keep_size) while stopped", nil, 0,
		fmt.Sprintf("refused to continue in %s, saying rows were not streamed and how to recover; after drop-slot, CREATE_SLOT=true once and `backfill --missing`: %s",
			refused.Round(10*time.Millisecond), summary(backfill)))
}
