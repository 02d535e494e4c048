package replication

import (
	"time"

	"github.com/jackc/pglogrepl"
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
