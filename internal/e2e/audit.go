package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/projection"
)

// Report compares a topic with the users table.
type Report struct {
	Inserted       int // rows in users
	Records        int // messages in the topic
	Missing        int // rows with no event: must be 0
	Duplicates     int // copies beyond the first
	CEIDMismatches int // copies whose ce_id differs from their first copy's: must be 0
	Leaked         int // events with a field outside username, country_code, created_at: must be 0
	Invalid        int // events failing the JSON Schema or differing from their row: must be 0
	// Orphans are events of users the table does not hold: 0, except where
	// a restore or a failover rolled back users that had reached Kafka.
	Orphans int
}

func (r Report) String() string {
	return fmt.Sprintf("inserted %d, records %d, missing %d, duplicates %d (ce_id mismatches %d), leaked %d, invalid %d, orphans %d",
		r.Inserted, r.Records, r.Missing, r.Duplicates, r.CEIDMismatches, r.Leaked, r.Invalid, r.Orphans)
}

// Clean reports whether nothing was lost, leaked or broken; orphans are the
// caller's to judge.
func (r Report) Clean() bool {
	return r.Missing == 0 && r.CEIDMismatches == 0 && r.Leaked == 0 && r.Invalid == 0
}

var allowed = map[string]bool{"username": true, "country_code": true, "created_at": true}

// Audit reads the whole topic with a plain consumer until every row of users
// has an event or timeout passes, then for quiet more, and compares.
func Audit(t testing.TB, bootstrap, topic string, pool *pgxpool.Pool, timeout time.Duration) Report {
	t.Helper()
	rows := usersByID(t, pool)
	validate, err := projection.Validator(projection.UserCreatedType)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": testenv.Name(t, "audit"), "log_level": 3,
		"auto.offset.reset": "earliest", "enable.auto.commit": false,
		"isolation.level": "read_committed", // what an exactly-once consumer reads
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}

	rep := Report{Inserted: len(rows)}
	firstCEID := map[string]string{}
	deadline := time.Now().Add(timeout)
	var lastAt time.Time
	const quiet = 2 * time.Second
	for {
		complete := len(firstCEID) >= len(rows)
		if complete && time.Since(lastAt) > quiet || time.Now().After(deadline) {
			break
		}
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			continue // timeouts and transient client errors
		}
		lastAt = time.Now()
		rep.Records++
		key := string(m.Key)
		ceid := ""
		for _, h := range m.Headers {
			// By its literal name, not envelope's: the audit shares no code
			// with the writer it audits.
			if h.Key == "ce_id" {
				ceid = string(h.Value)
			}
		}
		if first, seen := firstCEID[key]; seen {
			rep.Duplicates++
			if first != ceid {
				rep.CEIDMismatches++
			}
		} else {
			firstCEID[key] = ceid
		}
		var fields map[string]any
		if json.Unmarshal(m.Value, &fields) == nil {
			for f := range fields {
				if !allowed[f] {
					rep.Leaked++
					break
				}
			}
		}
		want, held := rows[key]
		switch {
		case validate(m.Value) != nil:
			rep.Invalid++
		case !held:
			rep.Orphans++
		case want != string(m.Value):
			rep.Invalid++
		}
	}
	for id := range rows {
		if _, ok := firstCEID[id]; !ok {
			rep.Missing++
		}
	}
	return rep
}

// usersByID maps each user id to the event value its row must produce.
func usersByID(t testing.TB, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rs, err := pool.Query(context.Background(),
		`SELECT id, username, country_code, created_at FROM users`)
	if err != nil {
		t.Fatalf("read users: %v", err)
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var (
			id      int64
			u, cc   string
			created time.Time
		)
		if err := rs.Scan(&id, &u, &cc, &created); err != nil {
			t.Fatal(err)
		}
		v, _ := json.Marshal(struct {
			Username    string `json:"username"`
			CountryCode string `json:"country_code"`
			CreatedAt   string `json:"created_at"`
		}{u, cc, created.UTC().Format(time.RFC3339Nano)})
		out[strconv.FormatInt(id, 10)] = string(v)
	}
	if rs.Err() != nil {
		t.Fatal(rs.Err())
	}
	return out
}

// TopicSize is the number of messages in a topic (the sum of its partitions'
// high watermarks); 0 while it does not exist or the broker is unreachable.
func TopicSize(t testing.TB, bootstrap, topic string) int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "size", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 5000)
	if err != nil {
		return 0
	}
	var n int64
	for _, p := range md.Topics[topic].Partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 5000)
		if err != nil {
			return 0
		}
		n += high
	}
	return n
}
