package archiver

import (
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/lake"
)

// partition is an owned partition: the files it fills, at most one per
// event date, and what the lake already holds of it.
//
// A file of date D holds every record of date D from its first offset to its
// last, so files of one date never overlap, while files of several dates
// fill side by side when a partition interleaves dates (snapshot copies
// between live events). Everything before the first offset of the oldest
// open file is durable in the lake: that is the offset to commit.
type partition struct {
	id      int32
	open    map[string]*openFile // by event date
	uploads map[*upload]struct{} // finished files on their way into the lake
	inLake  inLake               // files present at assignment, to skip a replay
	next    int64                // offset after the last record read; the start before any (-1: the partition's start)
	// unpublished is the lowest first offset of a file dropped or not
	// published (-1: none): the low water mark never passes it.
	unpublished int64
	committed   int64 // the last offset committed (-1: none this assignment)
}

func newPartition(id int32, start int64, files []lake.FileName) *partition {
	return &partition{id: id, open: map[string]*openFile{}, uploads: map[*upload]struct{}{}, inLake: newInLake(files, start), next: start, unpublished: -1, committed: start}
}

// hole records that the file starting at first will not reach the lake.
func (p *partition) hole(first int64) {
	if p.unpublished < 0 || first < p.unpublished {
		p.unpublished = first
	}
}

// lowWater is the offset before which every record is in a durable file or
// is none a file can hold (a transaction marker, an aborted record): the
// offset to commit, or -1 when nothing is known yet.
func (p *partition) lowWater() int64 {
	w := p.next
	if p.unpublished >= 0 && (w < 0 || p.unpublished < w) {
		w = p.unpublished
	}
	for _, f := range p.open {
		if w < 0 || f.name.First < w {
			w = f.name.First
		}
	}
	for u := range p.uploads {
		if w < 0 || u.f.name.First < w {
			w = u.f.name.First
		}
	}
	return w
}

// add puts one record into the open file of its date, rolling that file
// first when the record is of another event type, and after when a limit is
// met. A record a file in the lake already holds is skipped.
func (a *Archiver) add(msg *kafka.Message) error {
	a.kafkaOK.Store(true)
	tp := msg.TopicPartition
	p := a.parts[tp.Partition]
	if p == nil {
		return nil // a record fetched before its partition was revoked
	}
	r, err := record(msg)
	if err != nil {
		return fmt.Errorf("%s partition %d offset %d: %w", a.cfg.Topic, tp.Partition, tp.Offset, err)
	}
	s := a.schemas[r.CEType]
	if s == nil {
		return fmt.Errorf("%s partition %d offset %d: no contract for event type %q", a.cfg.Topic, tp.Partition, tp.Offset, r.CEType)
	}
	date := r.CETime.UTC().Format(time.DateOnly)
	if p.inLake.holds(date, r.Offset) {
		// A file of this date open from before the lake's file must end
		// here: it may hold only the records up to that file.
		if f := p.open[date]; f != nil {
			if err := a.roll(p, f); err != nil {
				return err
			}
		}
		p.next = r.Offset + 1
		a.m.Skipped.Inc()
		return nil
	}
	f := p.open[date]
	if f != nil && f.eventTyp != r.CEType {
		if err := a.roll(p, f); err != nil {
			return err
		}
		f = nil
	}
	if f == nil {
		if a.openFiles >= a.cfg.Roll.MaxOpenFiles {
			if err := a.rollLeastRecent(); err != nil {
				return err
			}
		}
		name := lake.FileName{Topic: a.cfg.Topic, Date: date, Partition: tp.Partition, First: r.Offset, Last: r.Offset}
		if f, err = newOpenFile(a.cfg.SpoolDir, s, name, a.cfg.Roll.RowGroupRows, time.Now()); err != nil {
			return err
		}
		p.open[date] = f
		a.openFiles++
	}
	if err := f.add(s, r); err != nil {
		if f.empty() {
			// The file was opened for this record: its name claims the
			// record's offset, so it must never be published.
			a.drop(p, f)
		}
		return fmt.Errorf("%s partition %d: %w", a.cfg.Topic, tp.Partition, err)
	}
	p.next = r.Offset + 1
	a.seq++
	f.used = a.seq
	a.m.Read.Inc()
	if f.full(a.cfg.Roll) {
		return a.roll(p, f)
	}
	return nil
}

// rollLeastRecent rolls the open file written to least recently, of any
// partition, to stay within MaxOpenFiles (and their memory).
func (a *Archiver) rollLeastRecent() error {
	var lp *partition
	var lf *openFile
	for _, p := range a.parts {
		for _, f := range p.open {
			if lf == nil || f.used < lf.used {
				lp, lf = p, f
			}
		}
	}
	if lf == nil {
		return nil
	}
	a.m.Evicted.Inc()
	return a.roll(lp, lf)
}

func (a *Archiver) rollAged(now time.Time) error {
	for _, p := range a.parts {
		for _, f := range p.open {
			if now.Sub(f.opened) >= a.cfg.Roll.MaxAge {
				if err := a.roll(p, f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// drop forgets an open file without publishing it.
func (a *Archiver) drop(p *partition, f *openFile) {
	delete(p.open, f.name.Date)
	a.openFiles--
	f.discard()
}
