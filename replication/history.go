package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// A commit as the slot's stream announces it: enough to tell one
// transaction from any other that a different history (a restore, a
// failover to a server that never had this WAL, another cluster) placed at
// the same LSN. Two histories that share a commit at an LSN with the same
// xid and commit timestamp share everything before it.
type CommitID struct {
	LSN  pglogrepl.LSN // start of the commit record, as in Begin
	Xid  uint32
	Time time.Time // the commit timestamp, to the microsecond
}

// Same reports whether c and o name the same transaction.
func (c CommitID) Same(o CommitID) bool {
	return c.LSN == o.LSN && c.Xid == o.Xid && c.Time.Equal(o.Time)
}

// FindCommit decodes, without consuming, the slot's stream up to the commit
// at lsn, and returns the transaction it holds there: found is false when
// no published transaction of this server's history commits at lsn (the
// slot's confirmed position already passed it, or the history differs). It
// fails with ErrSlotActive while another process streams from the slot.
// Its cost is decoding the WAL between the slot's position and lsn.
func FindCommit(ctx context.Context, conn *pgx.Conn, slot, publication string, lsn pglogrepl.LSN) (CommitID, bool, error) {
	// Only the Begin messages ('B' = 66) matter; each names its transaction's
	// commit LSN, xid and commit timestamp. Decoding stops after the first
	// record that ends at or past its upto_lsn; the record before a commit
	// ends where the commit starts, so the limit is one byte further.
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL,
			'proto_version', '1', 'publication_names', $3) WHERE get_byte(data, 0) = 66`,
		slot, (lsn + 1).String(), publication)
	if err != nil {
		return CommitID{}, false, fmt.Errorf("peek at slot %s up to %s: %w", slot, lsn, classify(err))
	}
	defer rows.Close()
	var found CommitID
	ok := false
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return CommitID{}, false, fmt.Errorf("peek at slot %s: %w", slot, err)
		}
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			return CommitID{}, false, fmt.Errorf("peek at slot %s: %w", slot, err)
		}
		if b, isBegin := msg.(*pglogrepl.BeginMessage); isBegin && b.FinalLSN == lsn {
			found, ok = CommitID{LSN: b.FinalLSN, Xid: b.Xid, Time: b.CommitTime}, true
		}
	}
	if err := rows.Err(); err != nil {
		return CommitID{}, false, fmt.Errorf("peek at slot %s up to %s: %w", slot, lsn, classify(err))
	}
	return found, ok, nil
}
