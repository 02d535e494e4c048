// Package checkpoint decides which WAL position the streamer may report to
// PostgreSQL as flushed. The rule that keeps anything from being lost: the
// position only ever covers transactions all of whose events Kafka has
// acknowledged, and every transaction before them, and is never a position
// inside a transaction.
//
// Delivery reports arrive out of order across partitions, so the position is
// the end of the last transaction in the unbroken run of fully delivered
// ones from the oldest, not the latest report.
package checkpoint

import (
	"sync"

	"github.com/jackc/pglogrepl"
)

// Tracker follows transactions in commit order. It is safe for concurrent
// use: the replication reader begins and commits transactions, the delivery
// reporter marks events delivered.
type Tracker struct {
	mu      sync.Mutex
	pending []*Txn // begun, not yet covered by acked; oldest first
	head    int    // index of the oldest entry in pending still in use
	acked   pglogrepl.LSN
}

// Txn is one transaction as the tracker sees it.
type Txn struct {
	outstanding int
	committed   bool
	end         pglogrepl.LSN
}

// New returns a tracker whose acknowledged position starts at start: the
// slot's confirmed position or a later start LSN the operator chose.
func New(start pglogrepl.LSN) *Tracker { return &Tracker{acked: start} }

// Begin opens the next transaction in commit order.
func (t *Tracker) Begin() *Txn {
	tx := &Txn{}
	t.mu.Lock()
	t.pending = append(t.pending, tx)
	t.mu.Unlock()
	return tx
}

// Add counts n more events of tx handed to Kafka.
func (t *Tracker) Add(tx *Txn, n int) {
	t.mu.Lock()
	tx.outstanding += n
	t.mu.Unlock()
}

// Delivered records that Kafka acknowledged n events of tx.
func (t *Tracker) Delivered(tx *Txn, n int) {
	t.mu.Lock()
	tx.outstanding -= n
	if tx.outstanding < 0 {
		t.mu.Unlock()
		panic("checkpoint: more deliveries than events")
	}
	t.advance()
	t.mu.Unlock()
}

// Commit closes tx; end is the LSN just past its commit record, where a
// restarted stream resumes after it.
func (t *Tracker) Commit(tx *Txn, end pglogrepl.LSN) {
	t.mu.Lock()
	tx.committed, tx.end = true, end
	t.advance()
	t.mu.Unlock()
}

// Idle moves the position to walEnd when nothing is in flight, so an idle
// streamer never makes PostgreSQL keep WAL. It does nothing while any
// transaction is open or undelivered.
func (t *Tracker) Idle(walEnd pglogrepl.LSN) {
	t.mu.Lock()
	if t.head == len(t.pending) && walEnd > t.acked {
		t.acked = walEnd
	}
	t.mu.Unlock()
}

// Acked is the position that may be reported as flushed.
func (t *Tracker) Acked() pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked
}

// InFlight is the number of transactions begun and not yet acknowledged.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) - t.head
}

// advance pops every leading transaction that is committed and fully
// delivered. Callers hold mu.
func (t *Tracker) advance() {
	for t.head < len(t.pending) {
		tx := t.pending[t.head]
		if !tx.committed || tx.outstanding > 0 {
			break
		}
		if tx.end > t.acked {
			t.acked = tx.end
		}
		t.pending[t.head] = nil
		t.head++
	}
	// Reclaim the consumed prefix once it dominates, keeping appends O(1)
	// amortised without unbounded growth.
	if t.head > 1024 && t.head*2 > len(t.pending) {
		n := copy(t.pending, t.pending[t.head:])
		clear(t.pending[n:])
		t.pending = t.pending[:n]
		t.head = 0
	}
}
