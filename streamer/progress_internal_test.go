package streamer

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/replication"
)

func TestAProgressRecordNamesItsTransactionSoAnotherHistoryIsToldApart(t *testing.T) {
	pr, err := delivery.ParseProgress([]byte(`{"slot":"users_cdc","commit_lsn":"0/16B3748","records":7,"complete":true,"xid":812,"commit_time":"2026-12-04T22:24:03.123456Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	id, ok := commitID(pr)
	if !ok || id.LSN != 0x16B3748 || id.Xid != 812 {
		t.Fatalf("commitID = %+v, %v", id, ok)
	}
	same := id
	same.Time = id.Time.In(time.FixedZone("elsewhere", 3600))
	if !id.Same(same) {
		t.Error("the same transaction read in another time zone is not the same")
	}
	for name, other := range map[string]func(c *replication.CommitID){
		"another xid at the same position":          func(c *replication.CommitID) { c.Xid++ },
		"another commit time at the same position":  func(c *replication.CommitID) { c.Time = c.Time.Add(time.Microsecond) },
		"the same xid and time at another position": func(c *replication.CommitID) { c.LSN++ },
	} {
		o := id
		other(&o)
		if id.Same(o) {
			t.Errorf("%s counts as the same transaction", name)
		}
	}
	for _, legacy := range []string{
		`{"slot":"users_cdc","commit_lsn":"0/16B3748","records":7,"complete":true}`,
		`{"slot":"users_cdc","commit_lsn":"0/0","records":0,"complete":false}`,
	} {
		pr, err := delivery.ParseProgress([]byte(legacy))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := commitID(pr); ok {
			t.Errorf("%s names a transaction, want none: it cannot be checked", legacy)
		}
	}
}

func TestTheStreamBearsOutAProgressRecordOnlyWithItsOwnTransaction(t *testing.T) {
	at := time.Date(2026, 12, 4, 22, 24, 3, 123456000, time.UTC)
	want := replication.CommitID{LSN: 0x200, Xid: 7, Time: at}
	txnAt := func(lsn pglogrepl.LSN, xid uint32, when time.Time) delivery.Position {
		return delivery.Position{LSN: uint64(lsn), Xid: xid, Time: when}
	}
	tests := []struct {
		name        string
		cur         delivery.Position
		wantProved  bool
		wantErr     bool
		stillChecks bool
	}{
		{"an earlier transaction is covered, but proves nothing yet", txnAt(0x100, 5, at), false, false, true},
		{"the record's own transaction proves the history", txnAt(0x200, 7, at), true, false, false},
		{"another xid at its position disproves it", txnAt(0x200, 8, at), false, true, true},
		{"another commit time at its position disproves it", txnAt(0x200, 7, at.Add(time.Second)), false, true, true},
		{"a later transaction before it was seen disproves it", txnAt(0x300, 9, at), false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := historyCheck{want: want, pending: true}
			proved, err := h.bears(tc.cur)
			if proved != tc.wantProved || (err != nil) != tc.wantErr || h.pending != tc.stillChecks {
				t.Fatalf("bears = %v, %v (pending %v); want %v, error %v, pending %v", proved, err, h.pending, tc.wantProved, tc.wantErr, tc.stillChecks)
			}
		})
	}
	t.Run("once proved, later transactions are not checked", func(t *testing.T) {
		h := historyCheck{want: want, pending: true}
		if _, err := h.bears(txnAt(0x200, 7, at)); err != nil {
			t.Fatal(err)
		}
		if proved, err := h.bears(txnAt(0x300, 9, at)); proved || err != nil {
			t.Fatalf("bears after proof = %v, %v", proved, err)
		}
		if err := h.passed(0x999); err != nil {
			t.Fatalf("passed after proof: %v", err)
		}
	})
	t.Run("a stream idle past its position without it disproves it", func(t *testing.T) {
		h := historyCheck{want: want, pending: true}
		if err := h.passed(0x200); err != nil {
			t.Fatalf("at its position: %v", err)
		}
		if err := h.passed(0x201); !errors.Is(err, errHistoryDiffers) {
			t.Fatalf("past its position: %v, want errHistoryDiffers", err)
		}
	})
}
