package archiver

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/lake"
)

// Policy says when a file rolls: whichever limit comes first. A file also
// rolls when its date's next record is of another event type (every file
// holds one date and one schema), and the least recently written file rolls
// when a new date needs a file while MaxOpenFiles are open.
type Policy struct {
	MaxBytes     int64         // estimated file size (default 128 MiB)
	MaxEvents    int64         // rows (default 1,000,000)
	MaxAge       time.Duration // since the file's first record arrived (default 5 minutes)
	RowGroupRows int64         // rows per Parquet row group (default eventfile.DefaultRowGroupRows)
	MaxOpenFiles int           // open files of all partitions together (default 16)
}

// WithDefaults fills the zero fields.
func (p Policy) WithDefaults() Policy {
	if p.MaxBytes <= 0 {
		p.MaxBytes = 128 << 20
	}
	if p.MaxEvents <= 0 {
		p.MaxEvents = 1_000_000
	}
	if p.MaxAge <= 0 {
		p.MaxAge = 5 * time.Minute
	}
	if p.MaxOpenFiles <= 0 {
		p.MaxOpenFiles = 16
	}
	if p.RowGroupRows <= 0 {
		p.RowGroupRows = eventfile.DefaultRowGroupRows
	}
	return p
}

// openFile is the file a partition is filling. Its rows go to a spool file
// on local disk that is unlinked as soon as it is made, so a crash leaves
// nothing behind and memory holds at most one row group.
type openFile struct {
	name     lake.FileName
	eventTyp string
	opened   time.Time
	used     uint64 // Archiver.seq when a record was last added
	spool    *os.File
	w        *eventfile.Writer
	seen     recent // ce_ids of the file's latest records, hashed
	dups     int64
	broken   bool // a write failed: the file must never be published
}

func newOpenFile(spoolDir string, s *eventfile.Schema, name lake.FileName, rowGroupRows int64, now time.Time) (*openFile, error) {
	spool, err := os.CreateTemp(spoolDir, "archiver-*.spool")
	if err != nil {
		return nil, fmt.Errorf("create spool file: %w", err)
	}
	// Unlinked at once: the open descriptor keeps the data until Close.
	if err := os.Remove(spool.Name()); err != nil {
		spool.Close()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	return &openFile{
		name: name, eventTyp: s.Type, opened: now, spool: spool,
		w: s.NewWriter(spool, rowGroupRows, spoolDir), seen: newRecent(dedupWindow),
	}, nil
}

// add writes r unless its ce_id is among the file's latest records; either
// way the file now covers r's offset.
func (f *openFile) add(s *eventfile.Schema, r eventfile.Record) error {
	h := sha256.Sum256([]byte(r.CEID))
	var k [16]byte
	copy(k[:], h[:16])
	if f.seen.has(k) {
		f.name.Last = r.Offset
		f.dups++
		return nil
	}
	row, err := s.Row(r)
	if err != nil {
		return err // the file is untouched and still whole up to Last
	}
	if err := f.w.Write(row, len(r.Value)+len(r.CEID)+len(r.CESource)+len(r.LSN)+len(r.Key)+32); err != nil {
		f.broken = true
		return err
	}
	f.name.Last = r.Offset
	f.seen.add(k)
	return nil
}

// dedupWindow is how many of a file's latest ce_ids it remembers. An
// at-least-once streamer repeats what it sent since the slot last confirmed
// (about a second of events) and a producer retry repeats a record at once,
// so copies sit close together; the lake's users_created view leaves out
// any copy that gets past the window, so the window bounds memory (about
// 40 bytes an entry) without costing correctness.
const dedupWindow = 16 << 10

// recent is a set of the last n keys added.
type recent struct {
	set  map[[16]byte]struct{}
	ring [][16]byte
	next int
}

func newRecent(n int) recent {
	return recent{set: make(map[[16]byte]struct{}, n), ring: make([][16]byte, 0, n)}
}

func (r *recent) has(k [16]byte) bool { _, ok := r.set[k]; return ok }

func (r *recent) add(k [16]byte) {
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, k)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[k] = struct{}{}
}

// empty says no record was taken into the file, not even as a duplicate.
func (f *openFile) empty() bool { return f.w.Rows() == 0 && f.dups == 0 }

func (f *openFile) full(p Policy) bool {
	return f.w.Rows() >= p.MaxEvents || f.w.Size() >= p.MaxBytes
}

// finish writes the Parquet footer into the spool file.
func (f *openFile) finish() error {
	if f.broken {
		return fmt.Errorf("file %s: an earlier write failed", f.name.Key())
	}
	return f.w.Close()
}

// put copies the finished file into the lake under its final name and
// returns the bytes stored; it may be called again after a failure.
func (f *openFile) put(ctx context.Context, l *lake.Lake) (int64, error) {
	if _, err := f.spool.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind spool file: %w", err)
	}
	return l.Put(ctx, f.name.Key(), f.spool)
}

// discard drops the spool file; nothing more of it can reach the lake.
func (f *openFile) discard() { f.spool.Close() }
