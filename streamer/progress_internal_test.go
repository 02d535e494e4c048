package streamer

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/replication"
)

func TestProgressCoversExactlyTheRecordsAlreadyInKafka(t *testing.T) {
	partial := progress{commit: 0x200, Records: 3}
	complete := progress{commit: 0x200, Records: 3, Complete: true}
	tests := []struct {
		name   string
		pr     progress
		commit pglogrepl.LSN
		seq    int
		want   bool
	}{
		{"nothing is covered without a progress record", progress{}, 0x100, 1, false},
		{"an earlier transaction is covered", partial, 0x100, 99, true},
		{"a later transaction is not", complete, 0x300, 1, false},
		{"the first records of a partly committed transaction are covered", partial, 0x200, 3, true},
		{"the rest of a partly committed transaction is not", partial, 0x200, 4, false},
		{"every record of a completed transaction is covered", complete, 0x200, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pr.covers(tc.commit, tc.seq); got != tc.want {
				t.Errorf("covers(%s, %d) = %v, want %v", tc.commit, tc.seq, got, tc.want)
			}
		})
	}
}

func TestAProgressRecordRoundTrips(t *testing.T) {
	pr, err := parseProgress([]byte(`{"slot":"users_cdc","commit_lsn":"0/16B3748","records":7,"complete":false}`))
	if err != nil || pr.commit != 0x16B3748 || pr.Records != 7 || pr.Complete {
		t.Fatalf("parseProgress = %+v, %v", pr, err)
	}
	if _, err := parseProgress([]byte(`{"commit_lsn":"nonsense"}`)); err == nil {
		t.Fatal("a progress record with a bad LSN parsed")
	}
}

func TestAProgressRecordNamesItsTransactionSoAnotherHistoryIsToldApart(t *testing.T) {
	pr, err := parseProgress([]byte(`{"slot":"users_cdc","commit_lsn":"0/16B3748","records":7,"complete":true,"xid":812,"commit_time":"2026-12-04T22:24:03.123456Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	id, ok := pr.commitID()
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
		pr, err := parseProgress([]byte(legacy))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pr.commitID(); ok {
			t.Errorf("%s names a transaction, want none: it cannot be checked", legacy)
		}
	}
}
