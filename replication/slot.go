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
	// Failover says a physical standby with slot sync keeps a copy of the
	// slot, usable after its promotion (PostgreSQL 17+). Synced says this
	// server's slot is such a copy (on a standby, or a promoted one).
	Failover bool `json:"failover"`
	Synced   bool `json:"synced"`
	// Invalidated says why PostgreSQL invalidated the slot (17+:
	// wal_removed, idle_timeout, rows_removed, ...); empty when it is valid.
	Invalidated string `json:"invalidation_reason,omitempty"`
}

// Slot reads the status of a slot; ErrSlotMissing when there is none.
func Slot(ctx context.Context, conn *pgx.Conn, name string) (SlotStatus, error) {
	var (
		s                           SlotStatus
		restart, confirmed, current string
		pid                         *int32
		plugin, database            *string
		walStatus, invalidated      *string
	)
	failover := "false, false, NULL::text"
	if ServerMajor(conn.PgConn()) >= FailoverSlotsSince {
		failover = "failover, synced, invalidation_reason"
	}
	// On a standby (in recovery) the WAL position is the replayed one.
	err := conn.QueryRow(ctx, `SELECT slot_name, plugin, database, active, active_pid,
			coalesce(restart_lsn::text, '0/0'), coalesce(confirmed_flush_lsn::text, '0/0'),
			wal_status, safe_wal_size, `+failover+`,
			w.lsn::text, coalesce(pg_wal_lsn_diff(w.lsn, confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots,
			LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn) w
		WHERE slot_name = $1`, name).
		Scan(&s.Name, &plugin, &database, &s.Active, &pid, &restart, &confirmed, &walStatus, &s.SafeWALBytes, &s.Failover, &s.Synced, &invalidated, &current, &s.LagBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotStatus{}, fmt.Errorf("slot %s: %w", name, ErrSlotMissing)
	}
	if err != nil {
		return SlotStatus{}, fmt.Errorf("read slot %s: %w", name, err)
	}
	s.Plugin, s.Database, s.WALStatus, s.Invalidated = deref(plugin), deref(database), deref(walStatus), deref(invalidated)
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
		if s.Invalidated != "" {
			return s, fmt.Errorf("slot %s (invalidated: %s): %w", name, s.Invalidated, ErrSlotLost)
		}
		return s, fmt.Errorf("slot %s: %w", name, ErrSlotLost)
	}
	return s, nil
}

// CreateSlot creates a permanent pgoutput slot when none has the name, and
// says whether it did; with failover, on PostgreSQL 17+, one that standbys
// with slot sync keep a copy of. A slot that exists with another plugin is
// an error. Whether a slot may be created at all is the caller's decision: a
// slot created after one was lost starts from now, and everything committed
// in between is never streamed.
func CreateSlot(ctx context.Context, conn *pgx.Conn, name string, failover bool) (bool, error) {
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
	sql := "SELECT pg_create_logical_replication_slot($1, 'pgoutput')"
	if failover && ServerMajor(conn.PgConn()) >= FailoverSlotsSince {
		sql = "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
	}
	_, err = conn.Exec(ctx, sql, name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return false, nil // duplicate_object: another streamer created it first
	}
	if err != nil {
		return false, fmt.Errorf("create slot %s: %w", name, err)
	}
	return true, nil
}

// EnableFailover turns failover on for an existing slot that is not in use,
// on PostgreSQL 17+ (ALTER_REPLICATION_SLOT, a replication command): a slot
// made before the upgrade, or before the setting, is then kept on standbys
// too. It waits for the slot when another process holds it, so ctx bounds it.
func EnableFailover(ctx context.Context, t Target, slot string) error {
	conn, err := t.connectReplication(ctx, "userstream-streamer")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "ALTER_REPLICATION_SLOT "+slot+" (FAILOVER true)").ReadAll(); err != nil {
		return fmt.Errorf("turn failover on for slot %s: %w", slot, classify(err))
	}
	return nil
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
