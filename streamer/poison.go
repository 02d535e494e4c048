package streamer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/userstream/userstream/replication"
)

// Poison says what happens to a committed change that cannot become a valid
// event (a poison row): it goes to the dead-letter topic, or it stops the
// streamer.
type Poison string

// The poison policies.
const (
	PoisonDeadLetter Poison = "dead-letter"
	PoisonStop       Poison = "stop"
)

// deadLetter is a dead-letter record's value: the change as PostgreSQL sent
// it, where it is in the WAL, and why it made no event. It lives in Kafka
// beside the events, never in a log.
type deadLetter struct {
	Error      string          `json:"error"`
	Table      string          `json:"table"`
	Op         string          `json:"op"`
	LSN        string          `json:"lsn"`
	CommitLSN  string          `json:"commit_lsn"`
	CommitTime string          `json:"commit_time"`
	Xid        uint32          `json:"xid"`
	Columns    []deadLetterCol `json:"columns"`
}

type deadLetterCol struct {
	Name     string  `json:"name"`
	TypeOID  uint32  `json:"type_oid"`
	Value    *string `json:"value"`              // null for SQL NULL and unchanged TOAST
	Encoding string  `json:"encoding,omitempty"` // base64 when the bytes are not UTF-8 text
	Unsent   bool    `json:"unchanged_toast,omitempty"`
}

// deadLetterRecord builds the key and value of a poison change's record.
// The key is the row's id as sent, when there is one, so the record lands
// beside its user's other records.
func deadLetterRecord(c *replication.Change, cause error) (key, value []byte, err error) {
	dl := deadLetter{
		Error: cause.Error(), Table: c.Relation.Namespace + "." + c.Relation.Name, Op: opName(c.Op),
		LSN: c.LSN.String(), CommitLSN: c.CommitLSN.String(), Xid: c.Xid,
		CommitTime: c.CommitTime.UTC().Format(time.RFC3339Nano),
	}
	for _, col := range c.Raw() {
		dc := deadLetterCol{Name: col.Name, TypeOID: col.TypeOID}
		switch col.Kind {
		case 'n':
		case 'u':
			dc.Unsent = true
		case 'b':
			v := base64.StdEncoding.EncodeToString(col.Data)
			dc.Value, dc.Encoding = &v, "base64"
		default:
			v := string(col.Data)
			if !utf8.ValidString(v) {
				v, dc.Encoding = base64.StdEncoding.EncodeToString(col.Data), "base64"
			}
			dc.Value = &v
		}
		if col.Name == "id" && dc.Value != nil && dc.Encoding == "" {
			key = []byte(*dc.Value)
		}
		dl.Columns = append(dl.Columns, dc)
	}
	value, err = json.Marshal(dl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return key, value, nil
}

func opName(op replication.Op) string { return ops[op].String() }

// copiedDeadLetter is the dead-letter record of a poison row read by a query
// (the snapshot, a backfill): the values as the query read them, with the
// error, keyed by the row's id.
func copiedDeadLetter(table string, cols []string, vals []any, id int64, cause error) ([]byte, []byte, error) {
	dl := deadLetter{Error: cause.Error(), Table: table, Op: "snapshot"}
	for i, name := range cols {
		dc := deadLetterCol{Name: name}
		if i < len(vals) && vals[i] != nil {
			v := fmt.Sprint(vals[i])
			dc.Value = &v
		}
		dl.Columns = append(dl.Columns, dc)
	}
	value, err := json.Marshal(dl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return []byte(strconv.FormatInt(id, 10)), value, nil
}
