package lakeaudit

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// File is an archiver file's name, parsed by the audit itself.
type File struct {
	Key       string
	Date      string
	Partition int32
	First     int64
	Last      int64
}

// The documented layout: <topic>/event_date=<date>/<topic>+<partition>+<first>+<last>.parquet,
// offsets in 20 digits.
var fileName = regexp.MustCompile(`^([^/]+)/event_date=(\d{4}-\d{2}-\d{2})/([^/]+)\+(\d+)\+(\d{20})\+(\d{20})\.parquet$`)

func parse(key string) (File, bool) {
	m := fileName.FindStringSubmatch(key)
	if m == nil || m[1] != m[3] {
		return File{}, false
	}
	p, _ := strconv.ParseInt(m[4], 10, 32)
	first, _ := strconv.ParseInt(m[5], 10, 64)
	last, _ := strconv.ParseInt(m[6], 10, 64)
	if last < first {
		return File{}, false
	}
	return File{Key: key, Date: m[2], Partition: int32(p), First: first, Last: last}, true
}

// Files lists the archiver's files of topic in the lake.
func Files(t testing.TB, s Store, topic string) []File {
	t.Helper()
	objs, err := s.Objects(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []File
	for key := range objs {
		if f, ok := parse(key); ok {
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

// Rec is a record a read_committed consumer reads: its offset and its event
// date (UTC, from ce_time).
type Rec struct {
	Offset int64
	Date   string
}

// Visible lists, per partition, the records a read_committed consumer
// reads: records of committed transactions and plain records, never
// transaction markers or aborted records, which no file can hold.
type Visible map[int32][]Rec

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
		m, ok := c.Poll(100).(*kafka.Message)
		if !ok {
			continue
		}
		date := ""
		for _, h := range m.Headers {
			// By its literal name, not envelope's: the audit shares no code
			// with the writer it audits.
			if h.Key == "ce_time" {
				if ts, err := time.Parse(time.RFC3339Nano, string(h.Value)); err == nil {
					date = ts.UTC().Format(time.DateOnly)
				}
			}
		}
		if date == "" {
			t.Fatalf("%s/%d offset %d has no ce_time the audit can read", topic, m.TopicPartition.Partition, m.TopicPartition.Offset)
		}
		out[m.TopicPartition.Partition] = append(out[m.TopicPartition.Partition], Rec{Offset: int64(m.TopicPartition.Offset), Date: date})
	}
}

// holders returns how many files hold the record: files of its date whose
// offsets enclose it.
func holders(byDate map[string][]File, r Rec) int {
	n := 0
	for _, f := range byDate[r.Date] {
		if f.First <= r.Offset && r.Offset <= f.Last {
			n++
		}
	}
	return n
}

// Gaps checks that topic's files hold every visible record exactly once (a
// file holds the records of its date between its first and last offsets),
// that no two files of one date overlap and that every file holds a visible
// record. It returns one line per problem.
func Gaps(files []File, visible Visible) []string {
	var out []string
	byPart := map[int32]map[string][]File{}
	for _, f := range files {
		if byPart[f.Partition] == nil {
			byPart[f.Partition] = map[string][]File{}
		}
		byPart[f.Partition][f.Date] = append(byPart[f.Partition][f.Date], f)
	}
	for p, byDate := range byPart {
		if _, ok := visible[p]; !ok {
			out = append(out, fmt.Sprintf("partition %d has files but no visible record", p))
		}
		for date, fs := range byDate {
			// By first offset: a file overlaps an earlier one when it starts
			// at or before the furthest end so far.
			reach := 0
			for i := 1; i < len(fs); i++ {
				if fs[i].First <= fs[reach].Last {
					out = append(out, fmt.Sprintf("partition %d, %s: file %d-%d overlaps %d-%d", p, date, fs[i].First, fs[i].Last, fs[reach].First, fs[reach].Last))
				}
				if fs[i].Last > fs[reach].Last {
					reach = i
				}
			}
		}
	}
	for p, recs := range visible {
		used := map[string]bool{}
		for _, r := range recs {
			switch n := holders(byPart[p], r); n {
			case 1:
				for _, f := range byPart[p][r.Date] {
					if f.First <= r.Offset && r.Offset <= f.Last {
						used[f.Key] = true
					}
				}
			case 0:
				out = append(out, fmt.Sprintf("partition %d: offset %d (%s) is in no file", p, r.Offset, r.Date))
			default:
				out = append(out, fmt.Sprintf("partition %d: offset %d (%s) is in %d files", p, r.Offset, r.Date, n))
			}
		}
		for _, fs := range byPart[p] {
			for _, f := range fs {
				if !used[f.Key] {
					out = append(out, fmt.Sprintf("%s holds no visible record", f.Key))
				}
			}
		}
	}
	return out
}

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

// WaitCovered reads the topic's visible records (now) and waits until the
// lake's files hold every one of them; it returns them.
func WaitCovered(t testing.TB, s Store, bootstrap, topic string, timeout time.Duration) Visible {
	t.Helper()
	visible := ReadVisible(t, bootstrap, topic)
	deadline := time.Now().Add(timeout)
	for {
		byPart := map[int32]map[string][]File{}
		for _, f := range Files(t, s, topic) {
			if byPart[f.Partition] == nil {
				byPart[f.Partition] = map[string][]File{}
			}
			byPart[f.Partition][f.Date] = append(byPart[f.Partition][f.Date], f)
		}
		missing, total := 0, 0
		for p, recs := range visible {
			for _, r := range recs {
				total++
				if holders(byPart[p], r) == 0 {
					missing++
				}
			}
		}
		if missing == 0 {
			return visible
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lake holds %d of the topic's %d visible records after %s", total-missing, total, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
