// Package projection turns replicated row changes into analytical events.
// It is pure: no I/O, no clock. Each event type is one Projector in a file of
// its own; the streamer binds a projector to a table's replicated columns
// whenever PostgreSQL describes the table (at start and after ALTER TABLE),
// and a binding that cannot be made stops the streamer before anything of
// that table is acknowledged.
package projection

import (
	"errors"
	"time"
)

// Op is the kind of change.
type Op uint8

// The changes logical replication carries.
const (
	Insert Op = iota + 1
	Update
	Delete
	Truncate
)

func (o Op) String() string {
	switch o {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Truncate:
		return "truncate"
	}
	return "unknown"
}

// Relation is a table as the replication stream describes it: only the
// columns the publication replicates, in stream order.
type Relation struct {
	Namespace string
	Name      string
	Columns   []Column
}

// Column is one replicated column.
type Column struct {
	Name    string
	TypeOID uint32
}

// Row gives one change's values by column position, decoded on demand so
// that a projection pays only for the columns it reads.
type Row interface {
	Value(i int) (any, error)
}

// Event is one Kafka message before transport metadata is added.
type Event struct {
	Type    string // CloudEvents type, e.g. user.created.v1
	Subject string // the entity the event is about (the user's id); with the change's LSN it forms ce_id
	Key     []byte // Kafka key: events of one entity keep their order
	Value   []byte // JSON, valid against the type's schema
	// OccurredAt is when the entity says it happened (a user's created_at):
	// the time of a copy read from the table, which holds no commit time.
	OccurredAt time.Time
}

// Projector makes the events of one table.
type Projector interface {
	// Table is the schema-qualified table the projector reads.
	Table() (namespace, name string)
	// SourceColumns are the columns the events are built from: the
	// publication's column list for the table.
	SourceColumns() []string
	// Bind checks that rel replicates every column the event needs, with a
	// compatible type, and returns the projection for rows of rel.
	Bind(rel Relation) (Binding, error)
}

// Binding projects rows of one relation version.
type Binding interface {
	// Project returns the event for a change, or ok=false when the change
	// makes no event (an update, a delete, …).
	Project(op Op, row Row) (ev Event, ok bool, err error)
}

// ErrSchema marks a table whose replicated columns no longer fit an event:
// a needed column was dropped, renamed or changed type. It needs an operator.
var ErrSchema = errors.New("replicated columns do not fit the event")

// ErrValue marks one row whose values cannot make a valid event (a NULL, an
// infinite or out-of-range timestamp): a poison row, not a schema change.
var ErrValue = errors.New("row does not make a valid event")

// All returns every projector the streamer runs.
func All() []Projector { return []Projector{UserCreated{}} }
