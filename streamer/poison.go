package streamer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/userstream/userstream/envelope"
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

// deadLetterRecord builds the key and value of a poison change's record.
// The key is the row's id as sent, when there is one, so the record lands
// beside its user's other records.
func deadLetterRecord(c *replication.Change, cause error) (key, value []byte, err error) {
	dl := envelope.DeadLetter{
		Error: cause.Error(), Table: c.Relation.Namespace + "." + c.Relation.Name, Op: opName(c.Op),
		LSN: c.LSN.String(), CommitLSN: c.CommitLSN.String(), Xid: c.Xid,
		CommitTime: c.CommitTime.UTC().Format(time.RFC3339Nano),
	}
	for _, col := range c.Raw() {
		dc := envelope.DeadLetterColumn{Name: col.Name, TypeOID: col.TypeOID}
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
