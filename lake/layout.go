package lake

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// The lake's layout, defined here and nowhere else: where a file sits, what
// its name says, what a put's temporary file is called, and the glob readers
// use. Every name is a function of the records the file holds, so a replay
// names a file the same way.
//
//	<topic>/event_date=<YYYY-MM-DD>/<topic>+<partition>+<first offset>+<last offset>.parquet
//
// A file holds every record of its partition whose event date is its folder's
// and whose offset lies between its first and last offsets, and no other:
// files of one date never overlap, while files of different dates may (a
// partition interleaves dates when snapshot copies meet live events).
// Offsets are zero-padded to 20 digits so names sort by offset.

// FileName says where a file sits in the lake and which records it holds.
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
	tempSuffix = ".tmp"
)

// Key is the file's object key under the lake's root.
func (f FileName) Key() string {
	return fmt.Sprintf("%s/%s%s/%s+%d+%020d+%020d%s", f.Topic, datePrefix, f.Date, f.Topic, f.Partition, f.First, f.Last, fileSuffix)
}

// Holds says whether the file holds (or, for a duplicate it dropped, covers)
// the record at offset of its partition with event date date.
func (f FileName) Holds(date string, offset int64) bool {
	return f.Date == date && f.First <= offset && offset <= f.Last
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

// TopicPrefix is the key prefix under which every file of topic sits.
func TopicPrefix(topic string) string { return topic + "/" }

// Glob is the pattern readers match topic's files with, relative to the
// lake's root: temporary files end in .tmp and never match it.
func Glob(topic string) string { return TopicPrefix(topic) + "**/*" + fileSuffix }

// tempPattern is the os.CreateTemp pattern of a file:// put's temporary
// file: hidden by its leading dot (pyarrow, Spark and Hive skip it) and
// ending in .tmp (no *.parquet glob matches it), next to its final name so
// the link never crosses a device.
func tempPattern(finalBase string) string { return "." + finalBase + ".*" + tempSuffix }

// TempOf returns the final key a leftover temporary file was written for
// (see tempPattern).
func TempOf(key string) (string, bool) {
	if !strings.HasSuffix(key, tempSuffix) {
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
