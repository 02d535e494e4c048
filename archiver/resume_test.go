package archiver

import (
	"path"
	"reflect"
	"testing"

	"github.com/userstream/userstream/lake"
)

func name(p int32, first, last int64, date string) lake.FileName {
	return lake.FileName{Topic: "users.created", Date: date, Partition: p, First: first, Last: last}
}

func TestResumeListsEachPartitionsFilesByOffsetAndFindsLeftoverTemporaryFiles(t *testing.T) {
	dir, base := path.Split(name(0, 20, 29, "2024-05-07").Key())
	hidden := dir + "." + base + ".1234567.tmp" // what the file:// lake writes
	keys := []string{
		hidden,
		name(0, 10, 19, "2024-05-07").Key(), // a later date folder sorts first here, but order must not matter
		name(0, 0, 9, "2024-05-06").Key(),
		name(1, 0, 29, "2024-05-06").Key(),
		name(0, 5, 25, "2024-05-08").Key(), // another date may interleave
		"other.topic/event_date=2024-05-06/other.topic+2+00000000000000000000+00000000000000000099.parquet",
		"users.created/event_date=2024-05-06/readme.txt",
	}
	got := ResumeFrom("users.created", keys)
	want := map[int32][]lake.FileName{
		0: {name(0, 0, 9, "2024-05-06"), name(0, 5, 25, "2024-05-08"), name(0, 10, 19, "2024-05-07")},
		1: {name(1, 0, 29, "2024-05-06")},
	}
	if !reflect.DeepEqual(got.Files, want) {
		t.Errorf("files %v, want %v", got.Files, want)
	}
	if want := map[int32][]string{0: {hidden}}; !reflect.DeepEqual(got.Temps, want) {
		t.Errorf("temporary files %v, want %v", got.Temps, want)
	}
	if got.Count() != 4 {
		t.Errorf("%d files, want 4", got.Count())
	}
}

func TestARecordReadAgainIsSkippedOnlyWhenAFileOfItsDateHoldsIt(t *testing.T) {
	files := []lake.FileName{name(0, 0, 9, "2024-05-06"), name(0, 3, 12, "2024-05-07"), name(0, 14, 20, "2024-05-06")}
	idx := newInLake(files, 5)
	for _, c := range []struct {
		date   string
		offset int64
		want   bool
	}{
		{"2024-05-06", 5, true}, {"2024-05-07", 6, true}, {"2024-05-08", 7, false},
		{"2024-05-06", 13, false}, // between two files of its date: not in the lake
		{"2024-05-07", 13, false}, {"2024-05-06", 14, true}, {"2024-05-06", 20, true}, {"2024-05-06", 21, false},
	} {
		if got := idx.holds(c.date, c.offset); got != c.want {
			t.Errorf("holds(%s, %d) = %v, want %v", c.date, c.offset, got, c.want)
		}
	}
	if n := newInLake(files, 13).count(); n != 1 {
		t.Errorf("%d files kept from offset 13, want 1 (the others end before it)", n)
	}
}

func TestTheLowWaterMarkWaitsForTheOldestOpenOrUnpublishedFile(t *testing.T) {
	p := newPartition(0, 100, nil)
	if w := p.lowWater(); w != 100 {
		t.Fatalf("nothing read: %d, want the start 100", w)
	}
	p.next = 130
	p.open["2024-05-06"] = &openFile{name: name(0, 104, 120, "2024-05-06")}
	p.open["2020-01-01"] = &openFile{name: name(0, 110, 129, "2020-01-01")}
	if w := p.lowWater(); w != 104 {
		t.Errorf("two open files: %d, want 104 (the oldest's first offset)", w)
	}
	delete(p.open, "2024-05-06")
	p.hole(104) // its put failed
	if w := p.lowWater(); w != 104 {
		t.Errorf("the file at 104 was not published: %d, want 104", w)
	}
	p = newPartition(0, -1, nil)
	if w := p.lowWater(); w != -1 {
		t.Errorf("from the partition's start, nothing read: %d, want -1", w)
	}
}

func TestAPolicyWithoutLimitsGetsTheDocumentedDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.MaxBytes != 128<<20 || p.MaxEvents != 1_000_000 || p.MaxAge.Minutes() != 5 || p.RowGroupRows <= 0 || p.MaxOpenFiles != 16 {
		t.Fatalf("defaults %+v", p)
	}
}

func TestTheDedupWindowRemembersTheLastKeysOnly(t *testing.T) {
	r := newRecent(3)
	key := func(i byte) [16]byte { return [16]byte{i} }
	for i := byte(1); i <= 5; i++ {
		r.add(key(i))
	}
	for i, want := range map[byte]bool{1: false, 2: false, 3: true, 4: true, 5: true} {
		if got := r.has(key(i)); got != want {
			t.Errorf("has(%d) = %v, want %v", i, got, want)
		}
	}
	if len(r.set) != 3 {
		t.Errorf("%d keys held, want 3", len(r.set))
	}
}
