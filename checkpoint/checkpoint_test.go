package checkpoint_test

import (
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/checkpoint"
)

func TestAckedPositionCoversOnlyFullyDeliveredTransactionsInOrder(t *testing.T) {
	tr := checkpoint.New(100)
	a, b, c := tr.Begin(), tr.Begin(), tr.Begin()
	tr.Add(a, 2)
	tr.Commit(a, 200)
	tr.Add(b, 1)
	tr.Commit(b, 300)
	tr.Commit(c, 400) // c has no event

	steps := []struct {
		name string
		do   func()
		want pglogrepl.LSN
	}{
		{"nothing delivered yet: the start position", func() {}, 100},
		{"b delivered before a: still blocked by a", func() { tr.Delivered(b, 1) }, 100},
		{"half of a delivered: never inside a transaction", func() { tr.Delivered(a, 1) }, 100},
		{"a complete: a, b and the empty c are covered", func() { tr.Delivered(a, 1) }, 400},
	}
	for _, s := range steps {
		s.do()
		if got := tr.Acked(); got != s.want {
			t.Fatalf("%s: acked %s, want %s", s.name, got, s.want)
		}
	}
	if n := tr.InFlight(); n != 0 {
		t.Errorf("in flight %d, want 0", n)
	}
}

func TestAnOpenTransactionIsNeverAcknowledgedEvenIfDelivered(t *testing.T) {
	tr := checkpoint.New(10)
	tx := tr.Begin()
	tr.Add(tx, 1)
	tr.Delivered(tx, 1)
	tr.Idle(999)
	if got := tr.Acked(); got != 10 {
		t.Fatalf("acked %s with the commit not yet seen, want 10", got)
	}
	tr.Commit(tx, 50)
	if got := tr.Acked(); got != 50 {
		t.Fatalf("acked %s after commit, want 50", got)
	}
}

func TestIdleAdvancesToTheServerWALEndOnlyWhenNothingIsInFlight(t *testing.T) {
	tr := checkpoint.New(10)
	tr.Idle(20)
	if got := tr.Acked(); got != 20 {
		t.Fatalf("idle: acked %s, want 20", got)
	}
	tx := tr.Begin()
	tr.Add(tx, 1)
	tr.Commit(tx, 30)
	tr.Idle(40)
	if got := tr.Acked(); got != 20 {
		t.Fatalf("undelivered event: acked %s, want 20", got)
	}
	tr.Delivered(tx, 1)
	tr.Idle(15) // an older keepalive never moves the position back
	if got := tr.Acked(); got != 30 {
		t.Fatalf("acked %s, want 30", got)
	}
}

func TestManyTransactionsKeepMemoryBoundedAndOrder(t *testing.T) {
	tr := checkpoint.New(0)
	var txs []*checkpoint.Txn
	for i := 1; i <= 100_000; i++ {
		tx := tr.Begin()
		tr.Add(tx, 1)
		tr.Commit(tx, pglogrepl.LSN(i*10))
		txs = append(txs, tx)
	}
	// Deliver in reverse: nothing is acknowledged until the first one lands.
	for i := len(txs) - 1; i >= 1; i-- {
		tr.Delivered(txs[i], 1)
	}
	if got := tr.Acked(); got != 0 {
		t.Fatalf("acked %s before the oldest delivery, want 0", got)
	}
	tr.Delivered(txs[0], 1)
	if got := tr.Acked(); got != 1_000_000 {
		t.Fatalf("acked %s, want 1000000", got)
	}
}
