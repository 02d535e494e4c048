// Package backfill sends the users a table already holds as events, through
// the same projection as the stream and with the same ce_id, in chunks by
// id: the initial snapshot (the rows committed before the slot's consistent
// point, sent while streaming goes on) and backfill jobs (an id range, or
// every user the topic lacks). Each chunk is made durable together with a
// cursor record on the progress topic, so a job killed halfway resumes after
// its last durable chunk; in exactly-once mode chunk and cursor commit in one
// Kafka transaction, so no row is sent twice. A row that makes no valid
// event follows the stream's policy: the dead-letter topic, or a stop.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// Source is the table the events are made from, and what becomes of a row
// that makes no valid event.
type Source struct {
	Projector projection.Projector
	// StopOnPoison stops the copy at a row that makes no valid event
	// (POISON=stop, or no dead-letter topic); otherwise it goes to the
	// dead-letter topic, in its chunk.
	StopOnPoison bool
	Log          zerolog.Logger
}

// ErrPoison stops a copy at a row that makes no valid event, with
// StopOnPoison.
var ErrPoison = errors.New("a row makes no valid event")

// Chunks is what a copy needs of delivery (a *delivery.Stream): records of
// a chunk, and the chunk made durable with its cursor.
type Chunks interface {
	ProduceChunk(ctx context.Context, c *delivery.Chunk, r delivery.Record) error
	Durable(ctx context.Context, c *delivery.Chunk, key, cursor []byte) error
}

// copier turns rows read by a query into records of a chunk: an event with
// the same ce_id as its streamed copy, flagged as a copy, or a dead letter.
type copier struct {
	src    Source
	d      Chunks
	table  string // schema-qualified
	source []byte // ce_source
	flag   string // envelope.Snapshot or envelope.Backfill
	what   string // "snapshot" or "backfill", for the log
	ce     *envelope.Encoder
}

func newCopier(src Source, d Chunks, systemID, database, flag, what string) *copier {
	ns, name := src.Projector.Table()
	return &copier{src: src, d: d, table: ns + "." + name, source: []byte(envelope.SourceOf(systemID, database, ns, name)),
		flag: flag, what: what, ce: envelope.NewEncoder()}
}

// copy produces the record of the row id (vals, bound by b) into chunk c.
// poison says it was a dead letter; produced is false for a row that makes
// no event.
func (cp *copier) copy(ctx context.Context, c *delivery.Chunk, b projection.Binding, id int64, vals []any) (produced, poison bool, err error) {
	ev, ok, err := b.Project(projection.Insert, valuesRow(vals))
	if errors.Is(err, projection.ErrValue) {
		return cp.poison(ctx, c, id, vals, err)
	}
	if err != nil {
		return false, false, fmt.Errorf("project the user with id %d: %w", id, err)
	}
	if !ok {
		return false, false, nil
	}
	headers := cp.ce.Copied(ev.Type, ev.Subject, ev.OccurredAt, cp.source, cp.flag)
	if err := cp.d.ProduceChunk(ctx, c, delivery.Record{Key: ev.Key, Value: ev.Value, Headers: headers}); err != nil {
		return false, false, fmt.Errorf("%s: produce user %s: %w", cp.what, ev.Subject, err)
	}
	return true, false, nil
}

// poison sends a row that makes no valid event to the dead-letter topic,
// in its chunk, as the stream does; the log names the column, never the
// value.
func (cp *copier) poison(ctx context.Context, c *delivery.Chunk, id int64, vals []any, cause error) (bool, bool, error) {
	if cp.src.StopOnPoison {
		return false, false, fmt.Errorf("%w: %s: user %d: %w. POISON=stop is set: fix or delete the row, or set POISON=dead-letter to send it to the dead-letter topic, then run again", ErrPoison, cp.what, id, cause)
	}
	cp.src.Log.Warn().Int64("id", id).Str("error", cause.Error()).Msg(cp.what + ": the row makes no valid event; sent to the dead-letter topic")
	key, value, err := deadLetter(cp.table, cp.src.Projector.SourceColumns(), vals, id, cause)
	if err != nil {
		return false, false, err
	}
	r := delivery.Record{Key: key, Value: value, Headers: envelope.CopiedDeadLetterHeaders(cp.source, cp.flag), DeadLetter: true}
	if err := cp.d.ProduceChunk(ctx, c, r); err != nil {
		return false, false, fmt.Errorf("%s: produce the dead letter of user %d: %w", cp.what, id, err)
	}
	return false, true, nil
}

// deadLetter is the dead-letter record of a poison row read by a query:
// the values as the query read them, with the error, keyed by the row's id.
func deadLetter(table string, cols []string, vals []any, id int64, cause error) ([]byte, []byte, error) {
	dl := envelope.DeadLetter{Error: cause.Error(), Table: table, Op: "snapshot"}
	for i, name := range cols {
		dc := envelope.DeadLetterColumn{Name: name}
		if i < len(vals) && vals[i] != nil {
			v := fmt.Sprint(vals[i])
			dc.Value = &v
		}
		dl.Columns = append(dl.Columns, dc)
	}
	value, err := json.Marshal(dl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return []byte(strconv.FormatInt(id, 10)), value, nil
}

// chunk reads up to limit rows with after < id <= upTo (and where) and
// copies each into c, but for those skip says to leave out. It returns how
// many rows it read, the last id, and what became of them.
func (cp *copier) chunk(ctx context.Context, conn *pgx.Conn, c *delivery.Chunk, q query, skip func(id int64) bool) (n int, last int64, res Result, err error) {
	rows, b, idCol, err := selectUsers(ctx, conn, cp.src.Projector, q.after, q.upTo, q.limit, q.where, q.args...)
	if err != nil {
		return 0, q.after, res, err
	}
	defer rows.Close()
	last = q.after
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			// pgx's message may quote the value: row contents stay out of
			// errors, which reach logs.
			return n, last, res, fmt.Errorf("%s: read the user after id %d: %w", cp.what, last, replication.ErrUndecodable)
		}
		n++
		if last, err = integerValue(vals[idCol]); err != nil {
			return n, last, res, err
		}
		if skip != nil && skip(last) {
			res.Present++
			continue
		}
		produced, poison, err := cp.copy(ctx, c, b, last, vals)
		if err != nil {
			return n, last, res, err
		}
		if produced {
			res.Produced++
		}
		if poison {
			res.Poison++
		}
	}
	return n, last, res, rows.Err()
}

// query is a chunk's query: after < id <= upTo, at most limit rows, and
// where appended to the condition ($4 on are its args).
type query struct {
	after, upTo int64
	limit       int
	where       string
	args        []any
}

// selectUsers reads up to limit rows with after < id <= upTo in id order,
// their projection's source columns only, with where appended to the
// condition ($4 on is its args), and binds the projection to them. idCol
// is the id's position among the columns.
func selectUsers(ctx context.Context, conn *pgx.Conn, pr projection.Projector, after, upTo int64, limit int, where string, args ...any) (pgx.Rows, projection.Binding, int, error) {
	ns, table := pr.Table()
	cols := pr.SourceColumns()
	idCol := slices.Index(cols, "id")
	if idCol < 0 {
		return nil, nil, 0, errors.New("the projection has no id column")
	}
	rows, err := conn.Query(ctx, "SELECT "+replication.QuoteColumns(cols)+" FROM "+replication.QuoteTable(ns+"."+table)+
		" WHERE id > $1 AND id <= $2"+where+" ORDER BY id LIMIT $3", append([]any{after, upTo, limit}, args...)...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read users after id %d: %w", after, err)
	}
	rel := projection.Relation{Namespace: ns, Name: table}
	for _, f := range rows.FieldDescriptions() {
		rel.Columns = append(rel.Columns, projection.Column{Name: f.Name, TypeOID: f.DataTypeOID})
	}
	b, err := pr.Bind(rel)
	if err != nil {
		// pgx reports a failed query (cancelled, timed out, refused) through
		// the rows, which then describe no columns: that failure is the
		// cause, not the binding.
		rows.Close()
		if qerr := rows.Err(); qerr != nil {
			return nil, nil, 0, fmt.Errorf("read users after id %d: %w", after, qerr)
		}
		return nil, nil, 0, err
	}
	return rows, b, idCol, nil
}

func integerValue(v any) (int64, error) {
	switch n := v.(type) {
	case int16:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	}
	return 0, fmt.Errorf("id decoded as %T, want an integer", v)
}

// valuesRow adapts a query's values to projection.Row.
type valuesRow []any

func (v valuesRow) Value(i int) (any, error) { return v[i], nil }
