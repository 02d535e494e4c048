// Package lakeaudit reads an archiver's lake the way its users do, with
// DuckDB over the Parquet files, and checks it for tests: every visible
// record of the topic in exactly one file, no file changed after it
// appeared, nothing half-written visible to the readers' glob. It shares no
// code with the writer: it lists and reads the lake with clients of its own
// (see Store) and parses file names itself. It lives apart from
// internal/e2e so that only tests of the lake link DuckDB.
package lakeaudit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/userstream/userstream/lakequery"
)

// Row is one stored row of the lake, as DuckDB reads it.
type Row struct {
	CEID      string
	Key       string
	Username  string
	Partition int32
	Offset    int64
}

// Rows reads every stored row of topic in the lake (duplicates included)
// with DuckDB.
func Rows(t testing.TB, s Store, topic string) []Row {
	t.Helper()
	ctx := context.Background()
	db, err := lakequery.Open(ctx, s.Local(t, topic), topic)
	if errors.Is(err, lakequery.ErrEmpty) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT ce_id, coalesce(kafka_key, ''), username, kafka_partition, kafka_offset
		FROM %s ORDER BY kafka_partition, kafka_offset`, lakequery.AllRows(topic)))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var r Row
		if err := rs.Scan(&r.CEID, &r.Key, &r.Username, &r.Partition, &r.Offset); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Count runs a one-number query over the lake's views.
func Count(t testing.TB, s Store, topic, query string) int64 {
	t.Helper()
	db, err := lakequery.Open(context.Background(), s.Local(t, topic), topic)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
