package archiver

import (
	"path"
	"reflect"
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

func TestResumeStartsEachPartitionAfterItsLastFileAndFindsLeftoverTemporaryFiles(t *testing.T) {
	name := func(p int32, first, last int64, date string) string {
		return FileName{Topic: "users.created", Date: date, Partition: p, First: first, Last: last}.Key()
	}
	tmp := name(1, 30, 39, "2024-05-07") + ".18f3a9c2.tmp"
	dir, base := path.Split(name(0, 20, 29, "2024-05-07"))
	hidden := dir + "." + base + ".1234567.tmp" // what the file:// lake writes now
	keys := []string{
		hidden,
		name(0, 0, 9, "2024-05-06"),
		name(0, 10, 19, "2024-05-07"), // a later date folder sorts after, but order must not matter
		name(1, 0, 29, "2024-05-06"),
		tmp,
		name(0, 5, 7, "2024-05-06"), // an overlapping older file does not move the start back
		"other.topic/event_date=2024-05-06/other.topic+2+00000000000000000000+00000000000000000099.parquet",
		"users.created/event_date=2024-05-06/readme.txt",
	}
	got := ResumeFrom("users.created", keys)
	if want := map[int32]int64{0: 20, 1: 30}; !reflect.DeepEqual(got.Next, want) {
		t.Errorf("next offsets %v, want %v", got.Next, want)
	}
	if want := map[int32][]string{0: {hidden}, 1: {tmp}}; !reflect.DeepEqual(got.Temps, want) {
		t.Errorf("temporary files %v, want %v", got.Temps, want)
	}
	if got.Files != 4 {
		t.Errorf("%d files, want 4", got.Files)
	}
}

func TestAPolicyWithoutLimitsGetsTheDocumentedDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.MaxBytes != 128<<20 || p.MaxEvents != 1_000_000 || p.MaxAge.Minutes() != 5 || p.RowGroupRows <= 0 {
		t.Fatalf("defaults %+v", p)
	}
}
