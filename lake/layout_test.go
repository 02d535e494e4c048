package lake

import (
	"path"
	"strings"
	"testing"
)

func TestAFileNameSaysItsPartitionAndOffsetsAndReadsBack(t *testing.T) {
	f := FileName{Topic: "users.created", Date: "2024-05-06", Partition: 3, First: 100, Last: 199}
	key := f.Key()
	want := "users.created/event_date=2024-05-06/users.created+3+00000000000000000100+00000000000000000199.parquet"
	if key != want {
		t.Fatalf("key %q, want %q", key, want)
	}
	got, ok := ParseKey(key)
	if !ok || got != f {
		t.Fatalf("ParseKey(%q) = %+v, %v; want %+v", key, got, ok, f)
	}
}

func TestKeysThatAreNotArchiverFilesAreNotParsed(t *testing.T) {
	for _, key := range []string{
		"users.created/event_date=2024-05-06/users.created+3+00000000000000000100+00000000000000000199.parquet.17a2b.tmp",
		"users.created/event_date=2024-05-06/users.created+3+100+199.parquet",
		"users.created/event_date=2024-05-06/other+3+00000000000000000100+00000000000000000199.parquet",
		"users.created/users.created+3+00000000000000000100+00000000000000000199.parquet",
		"users.created/event_date=2024-05-06/users.created+3+00000000000000000200+00000000000000000199.parquet",
		"users.created/event_date=2024-05-06/notes.txt",
	} {
		if f, ok := ParseKey(key); ok {
			t.Errorf("ParseKey(%q) accepted %+v", key, f)
		}
	}
}

func TestAFileHoldsTheRecordsOfItsDateBetweenItsOffsetsOnly(t *testing.T) {
	f := FileName{Topic: "users.created", Date: "2024-05-06", Partition: 3, First: 100, Last: 199}
	for _, c := range []struct {
		date   string
		offset int64
		want   bool
	}{{"2024-05-06", 100, true}, {"2024-05-06", 199, true}, {"2024-05-06", 150, true},
		{"2024-05-06", 99, false}, {"2024-05-06", 200, false}, {"2024-05-07", 150, false}} {
		if got := f.Holds(c.date, c.offset); got != c.want {
			t.Errorf("Holds(%s, %d) = %v, want %v", c.date, c.offset, got, c.want)
		}
	}
}

func TestATemporaryFileNamesTheFileItWasWrittenFor(t *testing.T) {
	final := FileName{Topic: "users.created", Date: "2024-05-07", Partition: 0, First: 20, Last: 29}.Key()
	dir, base := path.Split(final)
	tmp := dir + strings.Replace(tempPattern(base), "*", "1234567", 1)
	if got, ok := TempOf(tmp); !ok || got != final {
		t.Errorf("TempOf(%q) = %q, %v; want %q", tmp, got, ok, final)
	}
	if _, ok := TempOf(final); ok {
		t.Errorf("TempOf accepted the final name %q", final)
	}
	if ok, _ := path.Match(strings.ReplaceAll(Glob("users.created"), "**", "*"), tmp); ok {
		t.Errorf("the readers' glob matches the temporary file %q", tmp)
	}
	if ok, _ := path.Match(strings.ReplaceAll(Glob("users.created"), "**", "*"), final); !ok {
		t.Errorf("the readers' glob misses %q", final)
	}
}
