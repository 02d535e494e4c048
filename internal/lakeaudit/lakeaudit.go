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
	"path/filepath"
	"strings"
	"testing"

	"github.com/userstream/userstream/lakequery"
)

// Row is one stored row of the lake, as DuckDB reads it, with the file it
// is in (its key, relative to the lake's root).
type Row struct {
	CEID      string
	Key       string
	Username  string
	Partition int32
	Offset    int64
	Date      string
	File      string
}

// Rows reads every stored row of topic in the lake (duplicates included)
// with DuckDB.
func Rows(t testing.TB, s Store, topic string) []Row {
	t.Helper()
	ctx := context.Background()
	root := s.Local(t, topic)
	db, err := lakequery.Open(ctx, root, topic)
	if errors.Is(err, lakequery.ErrEmpty) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT ce_id, coalesce(kafka_key, ''), username, kafka_partition, kafka_offset,
		strftime(ce_time AT TIME ZONE 'UTC', '%%Y-%%m-%%d'), filename
		FROM read_parquet('%s/%s/**/*.parquet', filename = true) ORDER BY kafka_partition, kafka_offset`, root, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var r Row
		if err := rs.Scan(&r.CEID, &r.Key, &r.Username, &r.Partition, &r.Offset, &r.Date, &r.File); err != nil {
			t.Fatal(err)
		}
		r.File = strings.TrimPrefix(filepath.ToSlash(r.File), filepath.ToSlash(root)+"/")
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Misplaced returns one line for each row whose file's name does not claim
// it: another partition, another event date, or an offset outside the
// file's first and last.
func Misplaced(rows []Row) []string {
	var out []string
	for _, r := range rows {
		f, ok := parse(r.File)
		if !ok || f.Partition != r.Partition || f.Date != r.Date || r.Offset < f.First || r.Offset > f.Last {
			out = append(out, fmt.Sprintf("partition %d offset %d (%s) is stored in %s", r.Partition, r.Offset, r.Date, r.File))
		}
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
