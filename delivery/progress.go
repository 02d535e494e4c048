package delivery

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/userstream/userstream/envelope"
)

// Progress is the exactly-once progress record's value. Records counts the
// records of the transaction at CommitLSN that are in Kafka; Complete says
// all are. Xid and CommitTime name that transaction in its source's
// history, so a stream skips on the record only where the history is the
// same one; SystemID and Timeline say where it was made, for the operator.
type Progress struct {
	Slot       string `json:"slot"`
	CommitLSN  string `json:"commit_lsn"`
	Records    int    `json:"records"`
	Complete   bool   `json:"complete"`
	Xid        uint32 `json:"xid,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	SystemID   string `json:"system_id,omitempty"`
	Timeline   int32  `json:"timeline,omitempty"`
	commit     uint64
}

// ParseProgress reads a progress record.
func ParseProgress(b []byte) (Progress, error) {
	var pr Progress
	if err := json.Unmarshal(b, &pr); err != nil {
		return pr, fmt.Errorf("progress record: %w", err)
	}
	lsn, err := parseLSN(pr.CommitLSN)
	if err != nil {
		return pr, fmt.Errorf("progress record: commit_lsn %q: %w", pr.CommitLSN, err)
	}
	pr.commit = lsn
	return pr, nil
}

// parseLSN reads a position as PostgreSQL prints it (%X/%X).
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("want a position such as 0/16B3748")
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, err
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, err
	}
	return h<<32 | l, nil
}

// CommitPosition is where the record's transaction commits (0: none).
func (pr Progress) CommitPosition() uint64 { return pr.commit }

// Names is the transaction the record names; ok is false for a record
// that names none (an earlier version's, or one made before anything was
// streamed).
func (pr Progress) Names() (Position, bool) {
	t, err := time.Parse(time.RFC3339Nano, pr.CommitTime)
	if pr.commit == 0 || pr.Xid == 0 || err != nil {
		return Position{}, false
	}
	return Position{LSN: pr.commit, Xid: pr.Xid, Time: t}, true
}

// covers says whether record number seq (from 1) of the transaction
// committed at commit is in Kafka by this progress. Transactions arrive in
// commit order, so every earlier one is.
func (pr Progress) covers(commit uint64, seq int) bool {
	switch {
	case pr.commit == 0 || commit > pr.commit:
		return false
	case commit < pr.commit:
		return true
	}
	return pr.Complete || seq <= pr.Records
}

// progressOf is the record saying that t's first records, all of them once
// its commit was read, are in Kafka.
func progressOf(slot string, t *Txn, systemID string, timeline int32) Progress {
	return Progress{Slot: slot, CommitLSN: string(envelope.AppendLSN(nil, t.Commit.LSN)), Records: t.seq, Complete: t.done,
		Xid: t.Commit.Xid, CommitTime: t.Commit.Time.UTC().Format(time.RFC3339Nano), SystemID: systemID, Timeline: timeline}
}
