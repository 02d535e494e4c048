package delivery

import "testing"

func TestProgressCoversExactlyTheRecordsAlreadyInKafka(t *testing.T) {
	partial := Progress{commit: 0x200, Records: 3}
	complete := Progress{commit: 0x200, Records: 3, Complete: true}
	tests := []struct {
		name   string
		pr     Progress
		commit uint64
		seq    int
		want   bool
	}{
		{"nothing is covered without a progress record", Progress{}, 0x100, 1, false},
		{"an earlier transaction is covered", partial, 0x100, 99, true},
		{"a later transaction is not", complete, 0x300, 1, false},
		{"the first records of a partly committed transaction are covered", partial, 0x200, 3, true},
		{"the rest of a partly committed transaction is not", partial, 0x200, 4, false},
		{"every record of a completed transaction is covered", complete, 0x200, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pr.covers(tc.commit, tc.seq); got != tc.want {
				t.Errorf("covers(%X, %d) = %v, want %v", tc.commit, tc.seq, got, tc.want)
			}
		})
	}
}

func TestAProgressRecordRoundTrips(t *testing.T) {
	pr, err := ParseProgress([]byte(`{"slot":"users_cdc","commit_lsn":"0/16B3748","records":7,"complete":false}`))
	if err != nil || pr.commit != 0x16B3748 || pr.Records != 7 || pr.Complete {
		t.Fatalf("ParseProgress = %+v, %v", pr, err)
	}
	if _, err := ParseProgress([]byte(`{"commit_lsn":"nonsense"}`)); err == nil {
		t.Fatal("a progress record with a bad LSN parsed")
	}
}
