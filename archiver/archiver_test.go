package archiver_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/internal/lakeaudit"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/lakequery"
)

func TestTheLakeReadWithDuckDBHoldsEveryProducedEventOnceInImmutableFiles(t *testing.T) {
	t.Parallel()
	bootstrap, topic, root := testenv.Kafka(t), testenv.Topic(t), t.TempDir()
	createTopic(t, bootstrap, topic, 3)
	day1 := time.Date(2024, 5, 6, 23, 50, 0, 0, time.UTC) // crosses midnight: two event dates
	evs := events("lake", 1200, 3, day1)
	// Every tenth event comes twice in a row, as after a streamer crash.
	var withDups []event
	for i, e := range evs {
		withDups = append(withDups, e)
		if i%10 == 0 {
			withDups = append(withDups, e)
		}
	}
	watch := lakeaudit.Watch(t, lakeaudit.Dir(root), topic)
	start(t, "file://"+root, bootstrap, topic, group(t), archiver.Policy{MaxEvents: 150, MaxAge: 500 * time.Millisecond})
	offsets := produce(t, bootstrap, topic, withDups)

	visible := lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
	files := lakeaudit.Files(t, lakeaudit.Dir(root), topic)
	if gaps := lakeaudit.Gaps(files, visible); len(gaps) > 0 {
		t.Errorf("offsets not covered exactly once: %v", gaps)
	}
	dates := map[string]bool{}
	for _, f := range files {
		dates[f.Date] = true
	}
	if len(dates) != 2 {
		t.Errorf("files in %d event_date folders, want 2 (the events cross midnight)", len(dates))
	}

	rows := lakeaudit.Rows(t, lakeaudit.Dir(root), topic)
	if bad := lakeaudit.Misplaced(rows); len(bad) > 0 {
		t.Errorf("rows in files whose names do not claim them: %v", bad)
	}
	byOffset := map[[2]int64]event{}
	for i, e := range withDups {
		byOffset[[2]int64{int64(e.partition), offsets[i]}] = e
	}
	ids := map[string]int{}
	for _, r := range rows {
		e, ok := byOffset[[2]int64{int64(r.Partition), r.Offset}]
		if !ok || e.ceID != r.CEID || e.username != r.Username || e.key != r.Key {
			t.Fatalf("lake row %+v does not match what was produced at its offset (%+v)", r, e)
		}
		ids[r.CEID]++
	}
	if len(ids) != len(evs) {
		t.Errorf("%d distinct ce_ids in the lake, want %d", len(ids), len(evs))
	}
	// Duplicates are dropped within a file; one split across a roll stays,
	// and the deduplicated view leaves it out.
	if dropped := len(withDups) - len(rows); dropped < len(withDups)-len(evs)-len(files) || dropped > len(withDups)-len(evs) {
		t.Errorf("%d rows for %d records with %d duplicates in %d files", len(rows), len(withDups), len(withDups)-len(evs), len(files))
	}
	if n := lakeaudit.Count(t, lakeaudit.Dir(root), topic, `SELECT count(*) FROM `+lakequery.View(topic)); n != int64(len(evs)) {
		t.Errorf("SELECT count(*) FROM %s returns %d, want %d (each event once)", lakequery.View(topic), n, len(evs))
	}
	typed := lakeaudit.Count(t, lakeaudit.Dir(root), topic, `SELECT count(*) FROM `+lakequery.AllRows(topic)+` WHERE typeof(created_at) = 'TIMESTAMP WITH TIME ZONE' AND created_at = TIMESTAMPTZ '2024-05-06 07:08:09+00' AND typeof(event_date) = 'DATE'`)
	if typed != int64(len(rows)) {
		t.Errorf("%d of %d rows have created_at as a UTC timestamp and event_date as a date", typed, len(rows))
	}

	watch.Stop()
	seen, changed, partial := watch.Report()
	if seen != len(files) || len(changed) > 0 || len(partial) > 0 {
		t.Errorf("watched %d files (of %d): changed after appearing %v; partial or foreign files visible %v", seen, len(files), changed, partial)
	}
}

func TestARestartedArchiverResumesFromTheFilesEvenInAGroupWithNoOffsets(t *testing.T) {
	t.Parallel()
	bootstrap, topic, root := testenv.Kafka(t), testenv.Topic(t), t.TempDir()
	createTopic(t, bootstrap, topic, 2)
	day := time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)
	first := start(t, "file://"+root, bootstrap, topic, group(t), archiver.Policy{MaxEvents: 40, MaxAge: 300 * time.Millisecond})
	produce(t, bootstrap, topic, events("before", 200, 2, day))
	lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
	if err := first.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	before := snapshot(t, root)

	// A new group has no committed offsets: only the files say where to go on.
	start(t, "file://"+root, bootstrap, topic, group(t), archiver.Policy{MaxEvents: 40, MaxAge: 300 * time.Millisecond})
	produce(t, bootstrap, topic, events("after", 100, 2, day.Add(time.Hour)))
	visible := lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
	if gaps := lakeaudit.Gaps(lakeaudit.Files(t, lakeaudit.Dir(root), topic), visible); len(gaps) > 0 {
		t.Errorf("after the restart: %v", gaps)
	}
	unchanged(t, before, snapshot(t, root), "changed or vanished after the restart")
	if rows := len(lakeaudit.Rows(t, lakeaudit.Dir(root), topic)); rows != 300 {
		t.Errorf("%d rows, want 300", rows)
	}
}

func TestAReplayWritesTheSameBytesUnderTheSameNames(t *testing.T) {
	t.Parallel()
	bootstrap, topic := testenv.Kafka(t), testenv.Topic(t)
	createTopic(t, bootstrap, topic, 3)
	produce(t, bootstrap, topic, events("replay", 384, 3, time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)))
	// Rolls by count only, so the boundaries are a function of the topic.
	policy := archiver.Policy{MaxEvents: 64, MaxAge: time.Hour, RowGroupRows: 50}
	var lakes [2]map[string][]byte
	for i := range lakes {
		root := t.TempDir()
		run := start(t, "file://"+root, bootstrap, topic, group(t), policy)
		lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
		if err := run.stop(t); err != nil {
			t.Fatal(err)
		}
		lakes[i] = snapshot(t, root)
	}
	if len(lakes[0]) != 6 {
		t.Errorf("%d files for 128 events per partition at 64 per file, want 6", len(lakes[0]))
	}
	for name, b := range lakes[0] {
		if !bytes.Equal(lakes[1][name], b) {
			t.Errorf("the replay's %s differs or is missing", name)
		}
	}
	if len(lakes[1]) != len(lakes[0]) {
		t.Errorf("the replay wrote %d files, the first run %d", len(lakes[1]), len(lakes[0]))
	}
}

// unchanged reports each file of before that after lacks or holds other
// bytes in.
func unchanged(t *testing.T, before, after map[string][]byte, says string) {
	t.Helper()
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s %s", name, says)
		}
	}
}

func snapshot(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[filepath.ToSlash(path[len(root):])] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestARecordTheLakeAlreadyHoldsEndsTheOpenFileOfItsDateSoNamesNeverOverlap(t *testing.T) {
	t.Parallel()
	bootstrap, topic, root := testenv.Kafka(t), testenv.Topic(t), t.TempDir()
	createTopic(t, bootstrap, topic, 1)
	produce(t, bootstrap, topic, events("holes", 10, 1, time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)))
	first := start(t, "file://"+root, bootstrap, topic, group(t), archiver.Policy{MaxEvents: 3, MaxAge: 300 * time.Millisecond})
	lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	// Two files whose puts had not landed when their archiver died, while
	// later ones had (puts run side by side and finish in any order).
	var gone []string
	for _, f := range lakeaudit.Files(t, lakeaudit.Dir(root), topic) {
		if f.First == 0 || f.First == 6 {
			gone = append(gone, f.Key)
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(f.Key))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(gone) != 2 {
		t.Fatalf("files %v: want ones starting at 0 and 6 (three events each)", lakeaudit.Files(t, lakeaudit.Dir(root), topic))
	}
	// A new group reads from the start; with large files it would make one
	// file of 0-9 over the files still there, unless each file it fills
	// ends where a file in the lake begins.
	start(t, "file://"+root, bootstrap, topic, group(t), archiver.Policy{MaxEvents: 100, MaxAge: 300 * time.Millisecond})
	visible := lakeaudit.WaitCovered(t, lakeaudit.Dir(root), bootstrap, topic, time.Minute)
	if gaps := lakeaudit.Gaps(lakeaudit.Files(t, lakeaudit.Dir(root), topic), visible); len(gaps) > 0 {
		t.Errorf("after the replay: %v", gaps)
	}
	unchanged(t, before, snapshot(t, root), "is not what the first run wrote: the replay filled the gaps with other files")
}
