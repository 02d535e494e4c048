package envelope

// DeadLetter is a dead-letter record's value: a change (or a row read by a
// query) that made no valid event, where it is in the WAL, and why. It
// lives in Kafka beside the events, never in a log. Op is insert, update,
// delete or truncate for a streamed change, snapshot for a row read by a
// query (which has no WAL position).
type DeadLetter struct {
	Error      string             `json:"error"`
	Table      string             `json:"table"`
	Op         string             `json:"op"`
	LSN        string             `json:"lsn"`
	CommitLSN  string             `json:"commit_lsn"`
	CommitTime string             `json:"commit_time"`
	Xid        uint32             `json:"xid"`
	Columns    []DeadLetterColumn `json:"columns"`
}

// DeadLetterColumn is one column of a dead letter, as the source sent it.
type DeadLetterColumn struct {
	Name     string  `json:"name"`
	TypeOID  uint32  `json:"type_oid"`
	Value    *string `json:"value"`              // null for SQL NULL and unchanged TOAST
	Encoding string  `json:"encoding,omitempty"` // base64 when the bytes are not UTF-8 text
	Unsent   bool    `json:"unchanged_toast,omitempty"`
}
