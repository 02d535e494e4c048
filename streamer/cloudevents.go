package streamer

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/projection"
)

// The CloudEvents binary-mode encoding of events, in one place for streamed,
// replayed and backfilled copies alike.

var (
	specVersion = []byte("1.0")
	contentJSON = []byte("application/json")
	trueValue   = []byte("true")
)

// ceSource is the CloudEvents source of a table's events: a URI-reference
// naming the cluster, the database and the table, each path segment
// percent-encoded so that any database name gives a valid URI.
func ceSource(systemID, database, namespace, table string) string {
	return "postgresql://" + url.PathEscape(systemID) + "/" + url.PathEscape(database) + "/" +
		escapeDots(url.PathEscape(namespace)) + "." + escapeDots(url.PathEscape(table))
}

// escapeDots keeps schema "a.b" with table "c" apart from schema "a" with
// table "b.c".
func escapeDots(s string) string { return strings.ReplaceAll(s, ".", "%2E") }

// appendCEID appends the event's id: its type and subject. A user is created
// once, so every copy of its creation (streamed, replayed after a crash,
// backfilled) has the same id, and consumers can deduplicate on it.
func appendCEID(dst []byte, ev projection.Event) []byte {
	dst = append(dst, ev.Type...)
	dst = append(dst, ':')
	return append(dst, ev.Subject...)
}

// ceEncoder builds each event's headers into reused buffers; Produce copies
// what it is given, so they are valid until the next call.
type ceEncoder struct {
	types   map[string][]byte // ce_type per event type, converted once
	headers []kafka.Header
	buf     []byte
}

func newCEEncoder() *ceEncoder { return &ceEncoder{types: map[string][]byte{}} }

func (e *ceEncoder) typ(t string) []byte {
	b, ok := e.types[t]
	if !ok {
		b = []byte(t)
		e.types[t] = b
	}
	return b
}

// streamed is the header set of a streamed event: CloudEvents plus the
// change's WAL positions.
func (e *ceEncoder) streamed(ev projection.Event, source []byte, lsn pglogrepl.LSN, cur *txn) []kafka.Header {
	b := append(e.buf[:0], ev.Subject...)
	subjectEnd := len(b)
	b = appendCEID(b, ev)
	idEnd := len(b)
	b = appendLSN(b, lsn)
	e.buf = b
	e.headers = append(ceHeaders(e.headers[:0], e.typ(ev.Type), source, b[subjectEnd:idEnd], cur.ceTime, b[:subjectEnd]),
		kafka.Header{Key: "userstream_lsn", Value: b[idEnd:]},
		kafka.Header{Key: "userstream_commit_lsn", Value: cur.commitLSN},
	)
	return e.headers
}

// copied is the header set of an event made from a row read by a query (a
// snapshot or a backfill): ce_time is the event's own time, so every run
// makes the same headers, and the header flag says which.
func (e *ceEncoder) copied(ev projection.Event, source []byte, flag string) []kafka.Header {
	b := append(e.buf[:0], ev.Subject...)
	subjectEnd := len(b)
	b = appendCEID(b, ev)
	idEnd := len(b)
	b = ev.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	e.buf = b
	e.headers = append(ceHeaders(e.headers[:0], e.typ(ev.Type), source, b[subjectEnd:idEnd], b[idEnd:], b[:subjectEnd]),
		kafka.Header{Key: flag, Value: trueValue})
	return e.headers
}

// ceHeaders appends the CloudEvents binary-mode headers every event carries.
func ceHeaders(dst []kafka.Header, typ, source, id, ceTime, subject []byte) []kafka.Header {
	return append(dst,
		kafka.Header{Key: "ce_specversion", Value: specVersion},
		kafka.Header{Key: "ce_type", Value: typ},
		kafka.Header{Key: "ce_source", Value: source},
		kafka.Header{Key: "ce_id", Value: id},
		kafka.Header{Key: "ce_time", Value: ceTime},
		kafka.Header{Key: "ce_subject", Value: subject},
		kafka.Header{Key: "content-type", Value: contentJSON},
	)
}

// appendLSN appends lsn as PostgreSQL prints it (%X/%X) without fmt.
func appendLSN(dst []byte, lsn pglogrepl.LSN) []byte {
	dst = appendUpperHex(dst, uint64(lsn)>>32)
	dst = append(dst, '/')
	return appendUpperHex(dst, uint64(lsn)&0xFFFFFFFF)
}

func appendUpperHex(dst []byte, v uint64) []byte {
	start := len(dst)
	dst = strconv.AppendUint(dst, v, 16)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c >= 'a' && c <= 'f' {
			dst[i] = c - 'a' + 'A'
		}
	}
	return dst
}
