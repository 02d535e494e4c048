package eventfile

import (
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// DefaultRowGroupRows is the default row group size: large enough for
// readers to skip by statistics, small enough that a filling group (held in
// memory, compressed page by page) stays a few MiB.
const DefaultRowGroupRows = 64 * 1024

// Writer writes the rows of one Parquet file to an io.Writer. The output is
// a function of the rows alone (no clock, no randomness), so the same rows
// make the same bytes.
type Writer struct {
	pw        *parquet.GenericWriter[any]
	batch     []parquet.Row // rows not yet handed to pw: one call per batch costs less than one per row
	out       *countingWriter
	pending   int64 // uncompressed bytes of rows not yet flushed
	flushedAt int64 // output bytes when pending was last reset
	rows      int64
}

// NewWriter starts a file of schema s on out; rowGroupRows bounds the rows
// of a row group. The row group's compressed pages wait in memory, or, when
// pageDir is set, in unlinked files there (the archiver's spool folder).
func (s *Schema) NewWriter(out io.Writer, rowGroupRows int64, pageDir string) *Writer {
	if rowGroupRows <= 0 {
		rowGroupRows = DefaultRowGroupRows
	}
	cw := &countingWriter{w: out}
	opts := []parquet.WriterOption{s.parquet,
		parquet.Compression(pageCodec),
		parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.CreatedBy("userstream-archiver", "", ""),
		parquet.KeyValueMetadata("userstream.event_type", s.Type),
	}
	if pageDir != "" {
		opts = append(opts, parquet.ColumnPageBuffers(spoolPool{dir: pageDir}))
	}
	return &Writer{pw: parquet.NewGenericWriter[any](cw, opts...), out: cw}
}

// writeBatch is how many rows Write gathers before handing them on.
const writeBatch = 256

// Write appends one row; size is its uncompressed size, used by Size. The
// row's values must stay unchanged until Close.
func (w *Writer) Write(row parquet.Row, size int) error {
	w.batch = append(w.batch, row)
	if len(w.batch) >= writeBatch {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.rows++
	w.pending += int64(size)
	if w.out.n > w.flushedAt {
		// A row group went out: what was pending is now counted compressed.
		w.flushedAt, w.pending = w.out.n, int64(size)
	}
	return nil
}

// Rows is the number of rows written.
func (w *Writer) Rows() int64 { return w.rows }

// Size estimates the file's size if it were closed now: bytes already
// written plus the rows still in memory at their uncompressed size, so the
// estimate is never below the final size by more than the footer.
func (w *Writer) Size() int64 { return w.out.n + w.pending }

func (w *Writer) flush() error {
	_, err := w.pw.WriteRows(w.batch)
	clear(w.batch)
	w.batch = w.batch[:0]
	if err != nil {
		return fmt.Errorf("write parquet rows: %w", err)
	}
	return nil
}

// Close writes the last row group and the footer.
func (w *Writer) Close() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.pw.Close(); err != nil {
		return fmt.Errorf("close parquet file: %w", err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
