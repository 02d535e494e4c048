// Package eventfile turns Kafka records of one event type into the rows of a
// Parquet file. The columns come from the event's contract (its JSON Schema)
// plus a fixed envelope: the CloudEvents attributes and where the record sat
// in Kafka. A new contract version with a new field therefore adds a column
// in its own files; files already written never change.
package eventfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/userstream/userstream/envelope"
)

// The envelope columns every file carries besides the event's own fields.
const (
	ColCEID       = envelope.ID // the columns named after their headers
	ColCETime     = envelope.Time
	ColCESource   = envelope.Source
	ColCEType     = envelope.Type
	ColKey        = "kafka_key"
	ColPartition  = "kafka_partition"
	ColOffset     = "kafka_offset"
	ColLSN        = "lsn"
	envelopeCount = 8
)

// kind is how a contract field is stored.
type kind int

const (
	kindString kind = iota
	kindTimestamp
	kindInt64
	kindDouble
	kindBool
)

// field is one column of the event's own fields.
type field struct {
	name     string
	kind     kind
	required bool
	col      int
}

// Schema is the Parquet layout of one event type. It is immutable and safe
// for concurrent use.
type Schema struct {
	Type    string
	parquet *parquet.Schema
	fields  []field
	byName  map[string]int // index into fields
	col     map[string]int // leaf column index of every column
}

// Contracts builds a Schema for every JSON Schema file (schema/<type>.json)
// in fsys, keyed by event type.
func Contracts(fsys fs.FS) (map[string]*Schema, error) {
	names, err := fs.Glob(fsys, "schema/*.json")
	if err != nil {
		return nil, fmt.Errorf("list contracts: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("list contracts: no schema/*.json")
	}
	out := map[string]*Schema{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("read contract %s: %w", n, err)
		}
		typ := strings.TrimSuffix(path.Base(n), ".json")
		s, err := FromContract(typ, b)
		if err != nil {
			return nil, err
		}
		out[typ] = s
	}
	return out, nil
}

// FromContract builds the Schema of eventType from its JSON Schema: a string
// with format date-time becomes a UTC TIMESTAMP in microseconds, other
// strings, integers, numbers and booleans their Parquet counterparts.
// Properties not listed as required are nullable.
func FromContract(eventType string, jsonSchema []byte) (*Schema, error) {
	var c struct {
		Type       string   `json:"type"`
		Required   []string `json:"required"`
		Properties map[string]struct {
			Type   string `json:"type"`
			Format string `json:"format"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(jsonSchema, &c); err != nil {
		return nil, fmt.Errorf("contract %s: %w", eventType, err)
	}
	if c.Type != "object" || len(c.Properties) == 0 {
		return nil, fmt.Errorf("contract %s: want an object with properties", eventType)
	}
	required := map[string]bool{}
	for _, r := range c.Required {
		required[r] = true
	}
	group := parquet.Group{
		ColCEID:      parquet.String(),
		ColCETime:    parquet.Timestamp(parquet.Microsecond),
		ColCESource:  parquet.String(),
		ColCEType:    parquet.String(),
		ColKey:       parquet.Optional(parquet.String()),
		ColPartition: parquet.Int(32),
		ColOffset:    parquet.Int(64),
		ColLSN:       parquet.Optional(parquet.String()),
	}
	s := &Schema{Type: eventType, byName: map[string]int{}, col: map[string]int{}}
	for name, p := range c.Properties {
		if _, clash := group[name]; clash {
			return nil, fmt.Errorf("contract %s: field %q clashes with an envelope column", eventType, name)
		}
		f := field{name: name, required: required[name]}
		var node parquet.Node
		switch {
		case p.Type == "string" && p.Format == "date-time":
			f.kind, node = kindTimestamp, parquet.Timestamp(parquet.Microsecond)
		case p.Type == "string":
			f.kind, node = kindString, parquet.String()
		case p.Type == "integer":
			f.kind, node = kindInt64, parquet.Int(64)
		case p.Type == "number":
			f.kind, node = kindDouble, parquet.Leaf(parquet.DoubleType)
		case p.Type == "boolean":
			f.kind, node = kindBool, parquet.Leaf(parquet.BooleanType)
		default:
			return nil, fmt.Errorf("contract %s: field %q has type %q, which the archiver cannot store", eventType, name, p.Type)
		}
		if !f.required {
			node = parquet.Optional(node)
		}
		group[name] = node
		s.byName[name] = len(s.fields)
		s.fields = append(s.fields, f)
	}
	for name, n := range group {
		group[name] = parquet.Compressed(n, pageCodec)
	}
	s.parquet = parquet.NewSchema(strings.ReplaceAll(eventType, ".", "_"), group)
	for i, leaf := range s.parquet.Columns() {
		s.col[leaf[0]] = i
	}
	for i := range s.fields {
		s.fields[i].col = s.col[s.fields[i].name]
	}
	if len(s.col) != len(s.fields)+envelopeCount {
		return nil, fmt.Errorf("contract %s: %d columns, want %d", eventType, len(s.col), len(s.fields)+envelopeCount)
	}
	return s, nil
}

// Columns lists the column names in file order.
func (s *Schema) Columns() []string {
	out := make([]string, 0, len(s.col))
	for _, c := range s.parquet.Columns() {
		out = append(out, c[0])
	}
	return out
}
