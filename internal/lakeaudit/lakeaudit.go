// Package lakeaudit reads an archiver's lake the way its users do, with
// DuckDB over the Parquet files, and checks it for tests: every offset of
// the topic in exactly one file, no file changed after it appeared, no
// temporary file visible to the readers' glob. It lives apart from
// internal/e2e so that only tests of the lake link DuckDB.
package lakeaudit

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/lakequery"
)

// Row is one row of the lake, as DuckDB reads it.
type Row struct {
	CEID      string
	Key       string
	Username  string
	Partition int32
	Offset    int64
}

// Rows reads every row of topic's view in the lake at root with DuckDB.
func Rows(t testing.TB, root, topic string) []Row {
	t.Helper()
	ctx := context.Background()
	db, err := lakequery.Open(ctx, root, topic)
	if errors.Is(err, lakequery.ErrEmpty) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT ce_id, coalesce(kafka_key, ''), username, kafka_partition, kafka_offset
		FROM %s ORDER BY kafka_partition, kafka_offset`, lakequery.View(topic)))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var r Row
		if err := rs.Scan(&r.CEID, &r.Key, &r.Username, &r.Partition, &r.Offset); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Count runs a one-number query over the lake (for example the dedup query).
func Count(t testing.TB, root, topic, query string) int64 {
	t.Helper()
	db, err := lakequery.Open(context.Background(), root, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Files lists the archiver's files of topic under root with their offsets.
func Files(t testing.TB, root, topic string) []archiver.FileName {
	t.Helper()
	var out []archiver.FileName
	for key := range keys(t, root, topic) {
		if f, ok := archiver.ParseKey(key); ok {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].First < out[j].First
	})
	return out
}

// Visible lists, per partition, the offsets a read_committed consumer
// reads: records of committed transactions and plain records, never
// transaction markers or aborted records, which no file can hold.
type Visible map[int32][]int64

// ReadVisible reads topic from the start with read_committed until every
// partition's position reaches its high watermark, read once, now.
func ReadVisible(t testing.TB, bootstrap, topic string) Visible {
	t.Helper()
	high := High(t, bootstrap, topic)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "lakeaudit-visible",
		"isolation.level": "read_committed", "enable.auto.commit": false, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tps []kafka.TopicPartition
	for p := range high {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	out := Visible{}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pos, err := c.Position(tps)
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, tp := range pos {
			if high[tp.Partition] > 0 && int64(tp.Offset) < high[tp.Partition] {
				done = false
			}
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("read_committed positions %v did not reach the high watermarks %v", pos, high)
		}
		if m, ok := c.Poll(100).(*kafka.Message); ok {
			out[m.TopicPartition.Partition] = append(out[m.TopicPartition.Partition], int64(m.TopicPartition.Offset))
		}
	}
}

// Gaps checks that topic's files hold every visible offset exactly once: no
// two files overlap, and every offset between files, before the first and
// after the last is invisible. It returns one line per problem.
func Gaps(files []FileName, visible Visible) []string {
	var out []string
	byPart := map[int32][]FileName{}
	for _, f := range files {
		byPart[f.Partition] = append(byPart[f.Partition], f)
	}
	for p, offs := range visible {
		fs := byPart[p]
		i := 0 // next visible offset to place
		prevLast := int64(-1)
		for _, f := range fs {
			if f.First <= prevLast {
				out = append(out, fmt.Sprintf("partition %d: file %d-%d overlaps the previous, which ends at %d", p, f.First, f.Last, prevLast))
			}
			for i < len(offs) && offs[i] < f.First {
				out = append(out, fmt.Sprintf("partition %d: offset %d is in no file", p, offs[i]))
				i++
			}
			for i < len(offs) && offs[i] <= f.Last {
				i++
			}
			prevLast = f.Last
		}
		for ; i < len(offs); i++ {
			out = append(out, fmt.Sprintf("partition %d: offset %d is in no file", p, offs[i]))
		}
	}
	for p := range byPart {
		if _, ok := visible[p]; !ok {
			out = append(out, fmt.Sprintf("partition %d has files but no visible record", p))
		}
	}
	return out
}

// FileName is an archiver file's name, parsed.
type FileName = archiver.FileName

// High returns the high watermark of every partition of topic.
func High(t testing.TB, bootstrap, topic string) map[int32]int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "lakeaudit", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for _, p := range md.Topics[topic].Partitions {
		_, h, err := c.QueryWatermarkOffsets(topic, p.ID, 10_000)
		if err != nil {
			t.Fatalf("watermarks of %s/%d: %v", topic, p.ID, err)
		}
		out[p.ID] = h
	}
	return out
}

// WaitCovered reads the topic's visible offsets (now) and waits until the
// lake's files reach the last of each partition; it returns them.
func WaitCovered(t testing.TB, root, bootstrap, topic string, timeout time.Duration) Visible {
	t.Helper()
	visible := ReadVisible(t, bootstrap, topic)
	deadline := time.Now().Add(timeout)
	for {
		var names []string
		for k := range keys(t, root, topic) {
			names = append(names, k)
		}
		res := archiver.ResumeFrom(topic, names)
		done := true
		for p, offs := range visible {
			if len(offs) > 0 && res.Next[p] <= offs[len(offs)-1] {
				done = false
			}
		}
		if done {
			return visible
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lake reached %v; the topic's visible records end at %v, within %s", res.Next, lastOf(visible), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastOf(v Visible) map[int32]int64 {
	out := map[int32]int64{}
	for p, offs := range v {
		if len(offs) > 0 {
			out[p] = offs[len(offs)-1]
		}
	}
	return out
}

// Watcher records the content of every file the moment it is first seen,
// and every time the readers' glob matched something that is not a whole
// archiver file, while it runs.
type Watcher struct {
	root, topic string
	mu          sync.Mutex
	seen        map[string][32]byte
	stamps      map[string]stamp
	changed     []string
	bad         []string
	stop        chan struct{}
	done        chan struct{}
}

type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// Watch polls the lake every 20 ms until Stop.
func Watch(t testing.TB, root, topic string) *Watcher {
	w := &Watcher{root: root, topic: topic, seen: map[string][32]byte{}, stamps: map[string]stamp{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.scan()
			select {
			case <-w.stop:
				w.scan()
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func (w *Watcher) scan() {
	dir := filepath.Join(w.root, w.topic)
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil // a .tmp file is what readers never match
		}
		key := filepath.ToSlash(strings.TrimPrefix(path, w.root+string(filepath.Separator)))
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st := stamp{size: info.Size(), mtime: info.ModTime()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		w.mu.Lock()
		same := w.stamps[key] == st
		w.mu.Unlock()
		if same {
			return nil // same inode, size and time: the bytes were hashed already
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // renamed or removed under us: seen next time
		}
		sum := sha256.Sum256(b)
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := archiver.ParseKey(key); !ok || len(b) < 8 || string(b[:4]) != "PAR1" || string(b[len(b)-4:]) != "PAR1" {
			w.bad = append(w.bad, key)
		}
		if prev, ok := w.seen[key]; ok && prev != sum {
			w.changed = append(w.changed, key)
		}
		w.seen[key] = sum
		w.stamps[key] = st
		return nil
	})
}

// Stop ends the watch (idempotent).
func (w *Watcher) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// Report says how many files were seen, which changed after they appeared,
// and which glob matches were not whole archiver files.
func (w *Watcher) Report() (seen int, changed, partial []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen), append([]string(nil), w.changed...), append([]string(nil), w.bad...)
}

func keys(t testing.TB, root, topic string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	dir := filepath.Join(root, topic)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		out[filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))] = true
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("list %s: %v", dir, err)
	}
	return out
}
