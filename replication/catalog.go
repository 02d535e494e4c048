package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The catalog queries a logical replication client needs besides the slot
// and the publication: whether the server is a primary, which database it
// is, a lock for decisions one process at a time, and a heartbeat.

// InRecovery reports whether the server is a standby.
func InRecovery(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return false, fmt.Errorf("ask whether the server is a standby: %w", err)
	}
	return standby, nil
}

// Database is the database conn is connected to.
func Database(ctx context.Context, conn *pgx.Conn) (string, error) {
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return "", fmt.Errorf("name the database: %w", err)
	}
	return db, nil
}

// Source names where conn's rows come from: the cluster's system
// identifier and the database.
func Source(ctx context.Context, conn *pgx.Conn) (systemID, database string, err error) {
	if err := conn.QueryRow(ctx, "SELECT system_identifier::text, current_database() FROM pg_control_system()").Scan(&systemID, &database); err != nil {
		return "", "", fmt.Errorf("identify database: %w", err)
	}
	return systemID, database, nil
}

// TryFirstRunLock takes the session-level advisory lock under which one
// process at a time decides about creating slot (and what comes with it);
// false: another process holds it. The lock ends with conn.
func TryFirstRunLock(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext('userstream:first-run:' || $1))", slot).Scan(&locked); err != nil {
		return false, fmt.Errorf("take the first-run lock of slot %s: %w", slot, err)
	}
	return locked, nil
}

// Heartbeat writes a non-transactional logical message, which moves the
// server's WAL end so keepalives let an idle slot advance.
func Heartbeat(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(false, 'userstream.heartbeat', '')")
	return err
}

// StandbySlots is synchronized_standby_slots (PostgreSQL 17+) and how many
// physical slots the server has.
func StandbySlots(ctx context.Context, conn *pgx.Conn) (setting string, physical int, err error) {
	err = conn.QueryRow(ctx, `SELECT current_setting('synchronized_standby_slots'),
		(SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical')`).Scan(&setting, &physical)
	return setting, physical, err
}

// PhysicalSlot says whether name is a physical slot of this server, and
// whether its standby is connected.
func PhysicalSlot(ctx context.Context, conn *pgx.Conn, name string) (exists, active bool, err error) {
	var kind string
	err = conn.QueryRow(ctx, "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&kind, &active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	return kind == "physical", active, nil
}
