package archiver

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// FileName says where a file sits in the lake and which records it holds:
//
//	<topic>/event_date=<YYYY-MM-DD>/<topic>+<partition>+<first offset>+<last offset>.parquet
//
// Offsets are zero-padded to 20 digits so names sort by offset. The name is
// a function of the records alone, so a replay names a file the same way.
type FileName struct {
	Topic     string
	Date      string // event date (UTC) of every record in the file, from ce_time
	Partition int32
	First     int64 // offset of the first record
	Last      int64 // offset of the last record
}

const (
	datePrefix = "event_date="
	fileSuffix = ".parquet"
)

// Key is the file's object key in the lake.
func (f FileName) Key() string {
	return fmt.Sprintf("%s/%s%s/%s+%d+%020d+%020d%s", f.Topic, datePrefix, f.Date, f.Topic, f.Partition, f.First, f.Last, fileSuffix)
}

// ParseKey reads a key made by Key. ok is false for anything else,
// including leftover temporary files.
func ParseKey(key string) (f FileName, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[1], datePrefix) || !strings.HasSuffix(parts[2], fileSuffix) {
		return FileName{}, false
	}
	f.Topic, f.Date = parts[0], strings.TrimPrefix(parts[1], datePrefix)
	fields := strings.Split(strings.TrimSuffix(parts[2], fileSuffix), "+")
	if len(fields) != 4 || fields[0] != f.Topic {
		return FileName{}, false
	}
	p, err1 := strconv.ParseInt(fields[1], 10, 32)
	first, err2 := strconv.ParseInt(fields[2], 10, 64)
	last, err3 := strconv.ParseInt(fields[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || len(fields[2]) != 20 || len(fields[3]) != 20 {
		return FileName{}, false
	}
	f.Partition, f.First, f.Last = int32(p), first, last
	return f, f.Key() == key
}

// tempOf returns the final key a leftover temporary file was written for:
// file:// lakes write .<name>.<random>.tmp next to the name (hidden from
// readers by its leading dot).
func tempOf(key string) (string, bool) {
	if !strings.HasSuffix(key, ".tmp") {
		return "", false
	}
	dir, base := path.Split(key)
	base = strings.TrimPrefix(base, ".")
	i := strings.LastIndex(base, fileSuffix+".")
	if i < 0 {
		return "", false
	}
	return dir + base[:i+len(fileSuffix)], true
}

// Resume is what the lake says about one topic's partitions.
type Resume struct {
	Next  map[int32]int64    // per partition: the offset after the last file's last
	Temps map[int32][]string // per partition: leftover temporary files of a crashed put
	Files int
}

// ResumeFrom reads the listed keys of topic. Files of other topics and names
// it does not recognise are ignored.
func ResumeFrom(topic string, keys []string) Resume {
	r := Resume{Next: map[int32]int64{}, Temps: map[int32][]string{}}
	for _, k := range keys {
		if final, ok := tempOf(k); ok {
			if f, ok := ParseKey(final); ok && f.Topic == topic {
				r.Temps[f.Partition] = append(r.Temps[f.Partition], k)
			}
			continue
		}
		f, ok := ParseKey(k)
		if !ok || f.Topic != topic {
			continue
		}
		r.Files++
		if next, seen := r.Next[f.Partition]; !seen || f.Last+1 > next {
			r.Next[f.Partition] = f.Last + 1
		}
	}
	return r
}
