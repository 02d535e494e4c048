package replication_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/replication"
)

// following acknowledges what its owner tells it to, as the streamer's
// tracker does once Kafka took a transaction.
type following struct{ lsn atomic.Uint64 }

func (f *following) Acked() pglogrepl.LSN { return pglogrepl.LSN(f.lsn.Load()) }
func (*following) Idle(pglogrepl.LSN)     {}

// openAtSlot opens a reader from the slot's confirmed position, with the
// acker made for it, and closes it at the test's end.
func openAtSlot(t *testing.T, conn *pgx.Conn, cfg replication.Config, acker func(pglogrepl.LSN) replication.Acker) *replication.Reader {
	t.Helper()
	ctx := context.Background()
	st, err := replication.Slot(ctx, conn, cfg.Slot)
	if err != nil {
		t.Fatal(err)
	}
	cfg.StartLSN = st.Confirmed
	r, err := replication.Open(ctx, cfg, acker(st.Confirmed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// At a steady load the walsender sends an unasked keepalive each time it
// waits for WAL; answering each would cost a write and a wake-up per
// transaction on both sides. The reader answers when asked and otherwise
// reports at most every ReportDelay, and the slot still confirms the last
// transaction promptly.
func TestAtASteadyLoadStatusUpdatesAreCoalescedNotOnePerTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, slot, conn := sharedCluster(t)
	ack := &following{}
	r := openAtSlot(t, conn, replication.Config{DSN: dsn, Slot: slot, Publication: "users_pub"}, func(confirmed pglogrepl.LSN) replication.Acker {
		ack.lsn.Store(uint64(confirmed))
		return ack
	})

	// Several connections, as an application has: one's commit flushes the
	// WAL of another's transaction still in progress, which the walsender
	// reads past before it waits, so it has sent beyond the last commit.
	const conns, each = 8, 100
	const txns = conns * each
	inserted := make(chan error, conns)
	for c := range conns {
		ins, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer ins.Close(ctx)
		// Test clusters commit asynchronously; production ones flush WAL at
		// each commit, which is what makes the walsender send, and wait,
		// per transaction.
		if _, err := ins.Exec(ctx, "SET synchronous_commit = on"); err != nil {
			t.Fatal(err)
		}
		go func() {
			for i := range each {
				if _, err := ins.Exec(ctx, "INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'FR', now(), 'test')",
					fmt.Sprintf("steady-%d-%d", c, i)); err != nil {
					inserted <- err
					return
				}
				time.Sleep(8 * time.Millisecond)
			}
			inserted <- nil
		}()
	}
	before := r.StatusUpdates()
	var last pglogrepl.LSN
	deadline := time.Now().Add(time.Minute)
	for commits := 0; commits < txns; {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d transactions in a minute", commits, txns)
		}
		v, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := v.(*replication.Commit); ok {
			commits++
			last = c.EndLSN
			ack.lsn.Store(uint64(c.EndLSN))
		}
	}
	for range conns {
		if err := <-inserted; err != nil {
			t.Fatal(err)
		}
	}
	sent := r.StatusUpdates() - before
	// One update per ReportDelay over the run (about a second and a half
	// here, more on a slow machine), a few answers to asked keepalives: far
	// fewer than the transactions. Answering every keepalive sent one per
	// transaction.
	if sent > txns/5 {
		t.Errorf("%d status updates for %d transactions: want at most %d", sent, txns, txns/5)
	}
	// Coalescing must not hold the position back: the slot confirms the last
	// transaction within a few report delays, as the reader sends what is
	// due between reads.
	confirmBy := time.Now().Add(10 * replication.ReportDelay)
	for {
		if err := r.SendStatusIfDue(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		st, err := replication.Slot(ctx, conn, slot)
		if err != nil {
			t.Fatal(err)
		}
		if st.Confirmed >= last {
			break
		}
		if time.Now().After(confirmBy) {
			t.Fatalf("the slot confirms %s, %s after the last commit at %s was acknowledged", st.Confirmed, 10*replication.ReportDelay, last)
		}
	}
	t.Logf("%d status updates for %d transactions", sent, txns)
}

// A reader that was frozen (SIGSTOP, a paused VM) past the server's
// wal_sender_timeout hands out nothing it still holds: the server dropped the
// connection, another process may stream the slot already, and what was
// buffered would reach Kafka twice.
func TestAReaderSilentPastWalSenderTimeoutHandsOutNothingMore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, slot, conn := sharedCluster(t)
	r := openAtSlot(t, conn, replication.Config{DSN: e2e.WithServerOption(t, dsn, "wal_sender_timeout=1s"), Slot: slot, Publication: "users_pub"},
		func(confirmed pglogrepl.LSN) replication.Acker { return ackAt(confirmed) })
	if _, err := conn.Exec(ctx, "INSERT INTO users (username, country_code, created_at, api_version) VALUES ('frozen-1', 'FR', now(), 'test')"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // frozen: nothing read, nothing sent
	// Woken while Kafka's queue is full, the streamer first sends a status
	// update: written into the dropped connection, it must not make the
	// connection look alive again.
	if err := r.SendStatusIfDue(ctx); !errors.Is(err, replication.ErrStale) {
		t.Errorf("SendStatusIfDue after a silence past wal_sender_timeout = %v; want ErrStale", err)
	}
	v, err := r.Next(ctx)
	if !errors.Is(err, replication.ErrStale) {
		t.Fatalf("Next after a silence past wal_sender_timeout = %T, %v; want ErrStale", v, err)
	}
}
