package archiver

import (
	"sort"

	"github.com/userstream/userstream/lake"
)

// Resume is what the lake says about one topic's partitions.
type Resume struct {
	Files map[int32][]lake.FileName // per partition, by first offset
	Temps map[int32][]string        // per partition: leftover temporary files of a crashed put
}

// ResumeFrom reads the listed keys of topic. Files of other topics and names
// it does not recognise are ignored.
func ResumeFrom(topic string, keys []string) Resume {
	r := Resume{Files: map[int32][]lake.FileName{}, Temps: map[int32][]string{}}
	for _, k := range keys {
		if final, ok := lake.TempOf(k); ok {
			if f, ok := lake.ParseKey(final); ok && f.Topic == topic {
				r.Temps[f.Partition] = append(r.Temps[f.Partition], k)
			}
			continue
		}
		if f, ok := lake.ParseKey(k); ok && f.Topic == topic {
			r.Files[f.Partition] = append(r.Files[f.Partition], f)
		}
	}
	for _, fs := range r.Files {
		sort.Slice(fs, func(i, j int) bool { return fs[i].First < fs[j].First })
	}
	return r
}

// Count is the number of files in the lake.
func (r Resume) Count() int {
	n := 0
	for _, fs := range r.Files {
		n += len(fs)
	}
	return n
}

// inLake indexes the files a partition already has in the lake, by event
// date, so a record read again (after a crash, a lost offset commit or a
// rebalance) is skipped when a file holds it. Only files reaching past the
// partition's start are kept.
type inLake map[string][]lake.FileName

func newInLake(files []lake.FileName, start int64) inLake {
	idx := inLake{}
	for _, f := range files { // by first offset, so each date's files are too
		if f.Last >= start {
			idx[f.Date] = append(idx[f.Date], f)
		}
	}
	return idx
}

// holds says whether a file in the lake holds the record at offset with
// event date date. Records arrive in offset order, so files ending before
// offset are dropped as they are passed.
func (idx inLake) holds(date string, offset int64) bool {
	fs := idx[date]
	for len(fs) > 0 && fs[0].Last < offset {
		fs = fs[1:]
	}
	if len(fs) == 0 {
		delete(idx, date)
		return false
	}
	idx[date] = fs
	return fs[0].Holds(date, offset)
}

func (idx inLake) count() int {
	n := 0
	for _, fs := range idx {
		n += len(fs)
	}
	return n
}
