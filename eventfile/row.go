package eventfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Record is one Kafka record with the CloudEvents headers the archiver keeps.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte // nil when the record has none
	Value     []byte
	CEID      string
	CETime    time.Time
	CESource  string
	CEType    string
	LSN       string // empty when the event carries none (backfilled events)
}

// Row converts a record into a row of s. A value that breaks the contract (not
// a JSON object, a missing required field, a field the contract does not list,
// a wrong type, a timestamp finer than a microsecond) is an error that names
// the field but never its content.
func (s *Schema) Row(r Record) (parquet.Row, error) {
	row := make(parquet.Row, len(s.col))
	if r.CEID == "" {
		return nil, fmt.Errorf("offset %d: no ce_id header", r.Offset)
	}
	if r.CETime.IsZero() {
		return nil, fmt.Errorf("offset %d: no ce_time header", r.Offset)
	}
	ceTime, err := micros(r.CETime)
	if err != nil {
		return nil, fmt.Errorf("offset %d: ce_time: %w", r.Offset, err)
	}
	row[s.col[ColCEID]] = parquet.ByteArrayValue([]byte(r.CEID)).Level(0, 0, s.col[ColCEID])
	row[s.col[ColCETime]] = parquet.Int64Value(ceTime).Level(0, 0, s.col[ColCETime])
	row[s.col[ColCESource]] = parquet.ByteArrayValue([]byte(r.CESource)).Level(0, 0, s.col[ColCESource])
	row[s.col[ColCEType]] = parquet.ByteArrayValue([]byte(r.CEType)).Level(0, 0, s.col[ColCEType])
	row[s.col[ColPartition]] = parquet.Int32Value(r.Partition).Level(0, 0, s.col[ColPartition])
	row[s.col[ColOffset]] = parquet.Int64Value(r.Offset).Level(0, 0, s.col[ColOffset])
	row[s.col[ColKey]] = optionalBytes(r.Key, s.col[ColKey])
	var lsn []byte
	if r.LSN != "" {
		lsn = []byte(r.LSN)
	}
	row[s.col[ColLSN]] = optionalBytes(lsn, s.col[ColLSN])

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.Value, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("offset %d: value is not a JSON object", r.Offset)
	}
	for name := range fields {
		if _, ok := s.byName[name]; !ok {
			return nil, fmt.Errorf("offset %d: field %q is not in the %s contract", r.Offset, name, s.Type)
		}
	}
	for _, f := range s.fields {
		raw, ok := fields[f.name]
		if !ok || string(raw) == "null" {
			if f.required {
				return nil, fmt.Errorf("offset %d: required field %q is missing", r.Offset, f.name)
			}
			row[f.col] = parquet.NullValue().Level(0, 0, f.col)
			continue
		}
		v, err := value(f.kind, raw)
		if err != nil {
			return nil, fmt.Errorf("offset %d: field %q: %w", r.Offset, f.name, err)
		}
		def := 0
		if !f.required {
			def = 1
		}
		row[f.col] = v.Level(0, def, f.col)
	}
	return row, nil
}

func optionalBytes(b []byte, col int) parquet.Value {
	if b == nil {
		return parquet.NullValue().Level(0, 0, col)
	}
	return parquet.ByteArrayValue(b).Level(0, 1, col)
}

func value(k kind, raw json.RawMessage) (parquet.Value, error) {
	switch k {
	case kindString:
		b, ok := jsonString(raw)
		if !ok {
			return parquet.Value{}, fmt.Errorf("want a string")
		}
		return parquet.ByteArrayValue(b), nil
	case kindTimestamp:
		b, ok := jsonString(raw)
		if !ok {
			return parquet.Value{}, fmt.Errorf("want an RFC 3339 string")
		}
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return parquet.Value{}, fmt.Errorf("want an RFC 3339 string")
		}
		us, err := micros(t)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.Int64Value(us), nil
	case kindInt64:
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return parquet.Value{}, fmt.Errorf("want an integer")
		}
		return parquet.Int64Value(n), nil
	case kindDouble:
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return parquet.Value{}, fmt.Errorf("want a number")
		}
		return parquet.DoubleValue(f), nil
	case kindBool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return parquet.Value{}, fmt.Errorf("want a boolean")
		}
		return parquet.BooleanValue(b), nil
	}
	return parquet.Value{}, fmt.Errorf("unknown kind %d", k)
}

// jsonString returns the text of a JSON string from a document that
// json.Unmarshal already validated. Without escapes the text is the bytes
// between the quotes, taken as they are; with escapes it is decoded.
func jsonString(raw json.RawMessage) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// micros is t in microseconds since the Unix epoch; a finer t is refused
// rather than silently truncated.
func micros(t time.Time) (int64, error) {
	if t.Nanosecond()%1000 != 0 {
		return 0, fmt.Errorf("finer than a microsecond")
	}
	return t.UnixMicro(), nil
}
