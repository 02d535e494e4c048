package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// CreateSlot creates a permanent pgoutput slot when none has the name, and
// says whether it did. A slot that exists with another plugin is an error.
// Whether a slot may be created at all is the caller's decision: a slot
// created after one was lost starts from now, and everything committed in
// between is never streamed.
func CreateSlot(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
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
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return false, nil // duplicate_object: another streamer created it first
	}
	if err != nil {
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

// CurrentWAL is the server's WAL insert position: past every commit so far,
// even with synchronous_commit off (pg_current_wal_lsn may trail it then).
func CurrentWAL(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("parse WAL position %q: %w", s, err)
	}
	return lsn, nil
}
