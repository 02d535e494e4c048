package replication

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Boundary is what a new slot's exported snapshot saw: exactly the rows
// committed before the slot's consistent point. Everything committed after
// it is in the slot's stream, so a copy of the rows visible in Snapshot plus
// the stream has every row once.
type Boundary struct {
	Snapshot string // pg_snapshot text, e.g. 728:730:729
	MaxID    int64  // the largest id visible in it (0: empty table)
	Rows     int64  // rows visible in it
}

// CreateSlotWithSnapshot creates a permanent pgoutput slot and reads, in the
// snapshot it exports, the table's boundary. The export lives only while
// the replication connection that made it stays idle, so it is imported at
// once and described as a pg_snapshot that later queries filter with.
//
// With failover, on PostgreSQL 17+, standbys with slot sync keep a copy of
// the slot. pglogrepl has no option for it, and a second command on this
// connection would destroy the exported snapshot: the one command asks for
// both.
func CreateSlotWithSnapshot(ctx context.Context, t Target, slot, table string, failover bool) (Boundary, error) {
	repl, err := t.connectReplication(ctx, "userstream-snapshot")
	if err != nil {
		return Boundary{}, err
	}
	defer repl.Close(context.Background())
	options := "SNAPSHOT 'export'"
	if failover && ServerMajor(repl) >= FailoverSlotsSince {
		options += ", FAILOVER true"
	}
	res, err := pglogrepl.ParseCreateReplicationSlot(repl.Exec(ctx, "CREATE_REPLICATION_SLOT "+slot+" LOGICAL pgoutput ("+options+")"))
	if err != nil {
		return Boundary{}, fmt.Errorf("create slot %s: %w", slot, err)
	}
	// The exported snapshot lives on that server only.
	conn, err := t.Connect(ctx)
	if err != nil {
		return Boundary{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var b Boundary
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
			return fmt.Errorf("import the slot's snapshot: %w", err)
		}
		return tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text, coalesce(max(id), 0), count(*) FROM "+QuoteTable(table)).
			Scan(&b.Snapshot, &b.MaxID, &b.Rows)
	})
	if err != nil {
		return Boundary{}, fmt.Errorf("read the snapshot of slot %s: %w", slot, err)
	}
	return b, nil
}

// VisibleIn is a SQL condition on a table's rows: the row's current version
// was committed in the pg_snapshot given as parameter $n. A row's xmin is a
// 32-bit xid; it is widened to an xid8 with the epoch of the server's next
// xid now (the previous epoch when it is above that), so a row written
// after the snapshot reads as newer than it, never as older. A row changed
// after the snapshot (an UPDATE) reads as not visible: the caller is for
// insert-only tables.
func VisibleIn(n int) string {
	s := fmt.Sprintf("$%d::pg_snapshot", n)
	now := "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
	wide := fmt.Sprintf("((%s & -4294967296) + xmin::text::bigint)", now)
	return fmt.Sprintf("pg_visible_in_snapshot(greatest(CASE WHEN %s > %s THEN %s - 4294967296 ELSE %s END, 3)::text::xid8, %s)",
		wide, now, wide, wide, s)
}
