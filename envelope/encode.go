package envelope

import "time"

// Encoder builds each event's headers into reused buffers: what it returns
// is valid until its next call, which suits a producer that copies headers
// as it takes a record. One Encoder serves one goroutine.
type Encoder struct {
	types   map[string][]byte // ce_type per event type, converted once
	headers []Header
	buf     []byte
}

// NewEncoder returns an empty encoder.
func NewEncoder() *Encoder { return &Encoder{types: map[string][]byte{}} }

func (e *Encoder) typ(t string) []byte {
	b, ok := e.types[t]
	if !ok {
		b = []byte(t)
		e.types[t] = b
	}
	return b
}

// Streamed is the header set of a streamed event: the CloudEvents
// attributes plus the change's WAL position (lsn) and its transaction's
// (commitLSN, formatted with AppendLSN; ceTime is its commit time in RFC
// 3339, shared by all its events).
func (e *Encoder) Streamed(typ, subject string, source []byte, lsn uint64, ceTime, commitLSN []byte) []Header {
	b := append(e.buf[:0], subject...)
	subjectEnd := len(b)
	b = AppendID(b, typ, subject)
	idEnd := len(b)
	b = AppendLSN(b, lsn)
	e.buf = b
	e.headers = append(cloudEvent(e.headers[:0], e.typ(typ), source, b[subjectEnd:idEnd], ceTime, b[:subjectEnd]),
		Header{Key: LSN, Value: b[idEnd:]},
		Header{Key: CommitLSN, Value: commitLSN},
	)
	return e.headers
}

// Copied is the header set of an event made from a row read by a query
// (flag: Snapshot or Backfill): ce_time is the event's own time, so every
// run makes the same headers.
func (e *Encoder) Copied(typ, subject string, occurred time.Time, source []byte, flag string) []Header {
	b := append(e.buf[:0], subject...)
	subjectEnd := len(b)
	b = AppendID(b, typ, subject)
	idEnd := len(b)
	b = occurred.UTC().AppendFormat(b, time.RFC3339Nano)
	e.buf = b
	e.headers = append(cloudEvent(e.headers[:0], e.typ(typ), source, b[subjectEnd:idEnd], b[idEnd:], b[:subjectEnd]),
		Header{Key: flag, Value: trueValue})
	return e.headers
}

// cloudEvent appends the CloudEvents binary-mode headers every event
// carries.
func cloudEvent(dst []Header, typ, source, id, ceTime, subject []byte) []Header {
	return append(dst,
		Header{Key: SpecVersion, Value: specVersion},
		Header{Key: Type, Value: typ},
		Header{Key: Source, Value: source},
		Header{Key: ID, Value: id},
		Header{Key: Time, Value: ceTime},
		Header{Key: Subject, Value: subject},
		Header{Key: ContentType, Value: contentJSON},
	)
}

// DeadLetterHeaders is the header set of a streamed change that made no valid
// event: where it came from and where it is in the WAL, but no ce_id, as
// it is no event.
func DeadLetterHeaders(source []byte, lsn uint64, commitLSN []byte) []Header {
	return []Header{
		{Key: Source, Value: source},
		{Key: ContentType, Value: contentJSON},
		{Key: LSN, Value: AppendLSN(nil, lsn)},
		{Key: CommitLSN, Value: commitLSN},
	}
}

// CopiedDeadLetterHeaders is the header set of a row read by a query that made no
// valid event; flag is Snapshot or Backfill.
func CopiedDeadLetterHeaders(source []byte, flag string) []Header {
	return []Header{{Key: Source, Value: source}, {Key: ContentType, Value: contentJSON}, {Key: flag, Value: trueValue}}
}
