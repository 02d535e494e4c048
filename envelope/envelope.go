// Package envelope is the events' wire format on Kafka, defined once: the
// CloudEvents binary-mode headers (ce_*) and userstream's own, how they are
// written and read, and the JSON Schema contract of every event type
// (schema/<type>.json). The streamer and its dead-letter path write with
// it; the archiver and eventfile read with it. It depends on no other
// package of the project, so a reader links nothing of the writer.
//
// Every copy of an event (streamed, replayed after a crash, snapshotted,
// backfilled) carries the same ce_id, so consumers can deduplicate on it.
package envelope

import (
	"embed"
	"net/url"
	"strconv"
	"strings"
)

// The header names. A streamed event carries the CloudEvents attributes,
// content-type, and its WAL positions; a copy made from a query carries a
// flag saying which (Snapshot, Backfill) instead of positions.
const (
	SpecVersion = "ce_specversion"
	Type        = "ce_type"
	Source      = "ce_source"
	ID          = "ce_id"
	Time        = "ce_time"
	Subject     = "ce_subject"
	ContentType = "content-type"
	// LSN is the change's WAL position, CommitLSN its transaction's commit
	// position, both as PostgreSQL prints them (%X/%X).
	LSN       = "userstream_lsn"
	CommitLSN = "userstream_commit_lsn"
	// Snapshot and Backfill flag ("true") an event made from a row read by
	// the initial snapshot or by a backfill.
	Snapshot = "userstream_snapshot"
	Backfill = "userstream_backfill"
)

// Schemas holds the JSON Schema of every event value, schema/<type>.json:
// the contract consumers hold events to, and the columns of the lake.
//
//go:embed schema/*.json
var Schemas embed.FS

// Header is one record header. Its layout is the Kafka clients' own, so a
// producer converts it field by field.
type Header struct {
	Key   string
	Value []byte
}

var (
	specVersion = []byte("1.0")
	contentJSON = []byte("application/json")
	trueValue   = []byte("true")
)

// SourceOf is the CloudEvents source of a table's events: a URI-reference
// naming the cluster, the database and the table, each path segment
// percent-encoded so that any database name gives a valid URI.
func SourceOf(systemID, database, namespace, table string) string {
	return "postgresql://" + url.PathEscape(systemID) + "/" + url.PathEscape(database) + "/" +
		escapeDots(url.PathEscape(namespace)) + "." + escapeDots(url.PathEscape(table))
}

// escapeDots keeps schema "a.b" with table "c" apart from schema "a" with
// table "b.c".
func escapeDots(s string) string { return strings.ReplaceAll(s, ".", "%2E") }

// AppendID appends an event's id: its type and subject. A user is created
// once, so every copy of its creation has the same id.
func AppendID(dst []byte, typ, subject string) []byte {
	dst = append(dst, typ...)
	dst = append(dst, ':')
	return append(dst, subject...)
}

// AppendLSN appends a WAL position as PostgreSQL prints it (%X/%X),
// without fmt.
func AppendLSN(dst []byte, lsn uint64) []byte {
	dst = appendUpperHex(dst, lsn>>32)
	dst = append(dst, '/')
	return appendUpperHex(dst, lsn&0xFFFFFFFF)
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
