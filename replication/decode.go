package replication

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// Op is the kind of a change.
type Op uint8

// The row changes pgoutput carries.
const (
	Insert Op = iota + 1
	Update
	Delete
	Truncate
)

// Relation describes a table's replicated columns. A new one arrives before
// the first change of a table in a stream and after every ALTER TABLE.
type Relation struct {
	ID        uint32
	Namespace string
	Name      string
	Columns   []Column
}

// Column is one replicated column.
type Column struct {
	Name    string
	TypeOID uint32
}

// Begin opens a transaction. Its changes follow, then its Commit.
type Begin struct {
	Xid        uint32
	CommitLSN  pglogrepl.LSN // start of the commit record
	CommitTime time.Time
}

// Commit closes a transaction.
type Commit struct {
	CommitLSN pglogrepl.LSN
	EndLSN    pglogrepl.LSN // just past the commit record: where a stream resumes after it
}

// Change is one row change (or truncate) inside a transaction.
type Change struct {
	Op         Op
	Relation   *Relation
	LSN        pglogrepl.LSN // WAL position of the change
	CommitLSN  pglogrepl.LSN
	CommitTime time.Time
	Xid        uint32

	tuple *pglogrepl.TupleData
	types *pgtype.Map
}

// Value decodes column i of the new row (for deletes, of the old key) with
// pgx's type map; nil is SQL NULL. Types pgx does not know come back as
// their text.
func (c *Change) Value(i int) (any, error) {
	if c.tuple == nil || i >= len(c.tuple.Columns) {
		return nil, fmt.Errorf("column %d: not in the change", i)
	}
	col := c.tuple.Columns[i]
	switch col.DataType {
	case pglogrepl.TupleDataTypeNull:
		return nil, nil
	case pglogrepl.TupleDataTypeToast:
		return nil, fmt.Errorf("column %d: unchanged TOAST value not sent", i)
	}
	format := int16(pgtype.TextFormatCode)
	if col.DataType == pglogrepl.TupleDataTypeBinary {
		format = pgtype.BinaryFormatCode
	}
	oid := c.Relation.Columns[i].TypeOID
	t, ok := c.types.TypeForOID(oid)
	if !ok {
		return string(col.Data), nil
	}
	v, err := t.Codec.DecodeValue(c.types, oid, format, col.Data)
	if err != nil {
		// pgx's message may quote the value: row contents stay out of errors,
		// which reach logs.
		return nil, fmt.Errorf("column %d (%s): %w", i, t.Name, ErrUndecodable)
	}
	return v, nil
}

// ErrUndecodable marks a value that does not decode as its column's type.
var ErrUndecodable = errors.New("value does not decode as its type")

// RawColumn is one column of a change as pgoutput sent it.
type RawColumn struct {
	Name    string
	TypeOID uint32
	Kind    byte   // 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary
	Data    []byte // aliases the connection's buffer until the next Next
}

// Raw is the change's row as sent, for a dead-letter record when it cannot
// be turned into an event.
func (c *Change) Raw() []RawColumn {
	if c.tuple == nil {
		return nil
	}
	out := make([]RawColumn, 0, len(c.tuple.Columns))
	for i, col := range c.tuple.Columns {
		rc := RawColumn{Kind: col.DataType, Data: col.Data}
		if i < len(c.Relation.Columns) {
			rc.Name, rc.TypeOID = c.Relation.Columns[i].Name, c.Relation.Columns[i].TypeOID
		}
		out = append(out, rc)
	}
	return out
}

// decode turns one pgoutput message into a typed value, or nil for the
// messages the caller needs not see (Type, Origin, logical messages).
func (r *Reader) decode(xld pglogrepl.XLogData) (any, error) {
	msg, err := pglogrepl.Parse(xld.WALData)
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		r.txn = txnState{commitLSN: m.FinalLSN, commitTime: m.CommitTime, xid: m.Xid}
		return &Begin{Xid: m.Xid, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime}, nil
	case *pglogrepl.CommitMessage:
		return &Commit{CommitLSN: m.CommitLSN, EndLSN: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		rel := &Relation{ID: m.RelationID, Namespace: m.Namespace, Name: m.RelationName}
		for _, c := range m.Columns {
			rel.Columns = append(rel.Columns, Column{Name: c.Name, TypeOID: c.DataType})
		}
		r.rels[m.RelationID] = rel
		return rel, nil
	case *pglogrepl.InsertMessage:
		return r.change(Insert, m.RelationID, m.Tuple, xld.WALStart)
	case *pglogrepl.UpdateMessage:
		return r.change(Update, m.RelationID, m.NewTuple, xld.WALStart)
	case *pglogrepl.DeleteMessage:
		return r.change(Delete, m.RelationID, m.OldTuple, xld.WALStart)
	case *pglogrepl.TruncateMessage:
		// One change per truncated table, with no row.
		if len(m.RelationIDs) == 0 {
			return nil, nil
		}
		return r.change(Truncate, m.RelationIDs[0], nil, xld.WALStart)
	}
	return nil, nil
}

func (r *Reader) change(op Op, relID uint32, tuple *pglogrepl.TupleData, lsn pglogrepl.LSN) (*Change, error) {
	rel, ok := r.rels[relID]
	if !ok {
		return nil, fmt.Errorf("change at %s for relation %d before its Relation message", lsn, relID)
	}
	return &Change{
		Op: op, Relation: rel, LSN: lsn,
		CommitLSN: r.txn.commitLSN, CommitTime: r.txn.commitTime, Xid: r.txn.xid,
		tuple: tuple, types: r.types,
	}, nil
}
