package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// SlotStatus is a slot as pg_replication_slots shows it, with how far it
// lags behind the server's current WAL position.
type SlotStatus struct {
	Name         string        `json:"slot"`
	Plugin       string        `json:"plugin"`
	Database     string        `json:"database"`
	Active       bool          `json:"active"`
	ActivePID    int32         `json:"active_pid,omitempty"`
	RestartLSN   pglogrepl.LSN `json:"-"`
	Confirmed    pglogrepl.LSN `json:"-"`
	WALStatus    string        `json:"wal_status"` // reserved, extended, unreserved or lost
	ServerLSN    pglogrepl.LSN `json:"-"`
	LagBytes     int64         `json:"lag_bytes"` // server WAL position minus confirmed position
	SafeWALBytes *int64        `json:"safe_wal_size,omitempty"`
}

// Slot reads the status of a slot; ErrSlotMissing when there is none.
func Slot(ctx context.Context, conn *pgx.Conn, name string) (SlotStatus, error) {
	var (
		s                           SlotStatus
		restart, confirmed, current string
		pid                         *int32
		plugin, database            *string
		walStatus                   *string
	)
	err := conn.QueryRow(ctx, `SELECT slot_name, plugin, database, active, active_pid,
			coalesce(restart_lsn::text, '0/0'), coalesce(confirmed_flush_lsn::text, '0/0'),
			wal_status, safe_wal_size,
			pg_current_wal_lsn()::text,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&s.Name, &plugin, &database, &s.Active, &pid, &restart, &confirmed, &walStatus, &s.SafeWALBytes, &current, &s.LagBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotStatus{}, fmt.Errorf("slot %s: %w", name, ErrSlotMissing)
	}
	if err != nil {
		return SlotStatus{}, fmt.Errorf("read slot %s: %w", name, err)
	}
	s.Plugin, s.Database, s.WALStatus = deref(plugin), deref(database), deref(walStatus)
	if pid != nil {
		s.ActivePID = *pid
	}
	for _, p := range []struct {
		text string
		dst  *pglogrepl.LSN
	}{{restart, &s.RestartLSN}, {confirmed, &s.Confirmed}, {current, &s.ServerLSN}} {
		if *p.dst, err = pglogrepl.ParseLSN(p.text); err != nil {
			return SlotStatus{}, fmt.Errorf("slot %s: parse LSN %q: %w", name, p.text, err)
		}
	}
	if s.WALStatus == "lost" {
		return s, fmt.Errorf("slot %s: %w", name, ErrSlotLost)
	}
	return s, nil
}

// EnsureSlot creates a permanent pgoutput slot when none has the name, and
// says whether it did. A slot that exists with another plugin is an error.
func EnsureSlot(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	s, err := Slot(ctx, conn, name)
	switch {
	case err == nil:
		if s.Plugin != "pgoutput" {
			return false, fmt.Errorf("slot %s uses plugin %q, want pgoutput", name, s.Plugin)
		}
		return false, nil
	case !errors.Is(err, ErrSlotMissing):
		return false, err
	}
	_, err = conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	if err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return false, nil // another streamer created it first
		}
		return false, fmt.Errorf("create slot %s: %w", name, err)
	}
	return true, nil
}

// DropSlot drops the slot; PostgreSQL then frees the WAL it held.
func DropSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
		return fmt.Errorf("drop slot %s: %w", name, classify(err))
	}
	return nil
}

// PublicationSpec is what the streamer needs a publication to publish.
type PublicationSpec struct {
	Name    string
	Table   string   // schema-qualified, e.g. public.users
	Columns []string // the column list; exactly these leave PostgreSQL
}

// ErrPublication marks a publication that does not publish what the streamer
// needs; the message says what to run.
var ErrPublication = errors.New("publication does not match")

// EnsurePublication creates the publication when missing (inserts only, with
// the column list), and otherwise checks that it publishes inserts of the
// table with exactly those columns.
func EnsurePublication(ctx context.Context, conn *pgx.Conn, spec PublicationSpec) error {
	create := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s (%s) WITH (publish = 'insert')",
		pgx.Identifier{spec.Name}.Sanitize(), QuoteTable(spec.Table), QuoteColumns(spec.Columns))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", spec.Name).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %s: %w", spec.Name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, create); err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("create publication %s (run as the table's owner: %s): %w", spec.Name, create, err)
		}
	}
	var (
		inserts bool
		cols    []string
	)
	err := conn.QueryRow(ctx, `SELECT p.pubinsert,
			coalesce((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
			          WHERE attrelid = pt.relid AND attnum = ANY(pt.prattrs)), '{}')
		FROM pg_publication p
		LEFT JOIN LATERAL (SELECT r.prrelid AS relid, r.prattrs FROM pg_publication_rel r
		                   WHERE r.prpubid = p.oid AND r.prrelid = $2::regclass) pt ON true
		WHERE p.pubname = $1 AND pt.relid IS NOT NULL`, spec.Name, spec.Table).Scan(&inserts, &cols)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: publication %s does not include table %s; recreate it: DROP PUBLICATION %s; %s",
			ErrPublication, spec.Name, spec.Table, pgx.Identifier{spec.Name}.Sanitize(), create)
	}
	if err != nil {
		return fmt.Errorf("read publication %s: %w", spec.Name, err)
	}
	want := slices.Sorted(slices.Values(spec.Columns))
	got := slices.Sorted(slices.Values(cols))
	if !inserts || !slices.Equal(got, want) {
		return fmt.Errorf("%w: publication %s publishes inserts=%v with columns %v of %s, the events need inserts of %v; fix it: ALTER PUBLICATION %s SET TABLE %s (%s)",
			ErrPublication, spec.Name, inserts, cols, spec.Table, spec.Columns,
			pgx.Identifier{spec.Name}.Sanitize(), QuoteTable(spec.Table), QuoteColumns(spec.Columns))
	}
	return nil
}

// QuoteTable quotes a schema-qualified table name for SQL.
func QuoteTable(qualified string) string {
	return pgx.Identifier(strings.Split(qualified, ".")).Sanitize()
}

// QuoteColumns quotes column names for a SQL column list.
func QuoteColumns(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
