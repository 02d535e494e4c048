package lakequery_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/lake"
	"github.com/userstream/userstream/lakequery"
	"github.com/userstream/userstream/projection"
)

// writeFile puts one archiver file with n users into the lake at root.
func writeFile(t *testing.T, root string, partition int32, first int64, n int, country string) {
	t.Helper()
	writeCopies(t, root, partition, first, first, n, country)
}

// writeCopies is writeFile for events first made at offset orig: the same
// ce_ids and keys, as an at-least-once streamer's replay writes them.
func writeCopies(t *testing.T, root string, partition int32, first, orig int64, n int, country string) {
	t.Helper()
	schemas, err := eventfile.Contracts(envelope.Schemas)
	if err != nil {
		t.Fatal(err)
	}
	s := schemas[projection.UserCreatedType]
	var buf bytes.Buffer
	w := s.NewWriter(&buf, 0, "")
	for i := 0; i < n; i++ {
		off, id := first+int64(i), orig+int64(i)
		row, err := s.Row(eventfile.Record{
			Partition: partition, Offset: off, Key: []byte(fmt.Sprint(id)),
			Value:  []byte(fmt.Sprintf(`{"username":"u%d-%d","country_code":%q,"created_at":"2021-01-01T00:00:00Z"}`, partition, id, country)),
			CEID:   fmt.Sprintf("%d-%d", partition, id),
			CETime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), CESource: "test", CEType: projection.UserCreatedType,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(row, 100); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	key := lake.FileName{Topic: "users.created", Date: "2024-05-06", Partition: partition, First: first, Last: first + int64(n) - 1}.Key()
	path := filepath.Join(root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// query runs q over the lake at root and returns its printed output, one
// space between words.
func query(t *testing.T, root, q string) string {
	t.Helper()
	ctx := context.Background()
	db, err := lakequery.Open(ctx, root, "users.created")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out bytes.Buffer
	if err := lakequery.Print(&out, rows); err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(out.String()), " ")
}

func TestAQueryGroupsTheWholeLakeAndIgnoresTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, 0, 0, 3, "BE")
	writeFile(t, root, 1, 0, 2, "NL")
	// A put in progress: readers' glob must not match it.
	tmp := filepath.Join(root, "users.created", "event_date=2024-05-06", ".users.created+2+00000000000000000000+00000000000000000009.parquet.17f.tmp")
	if err := os.WriteFile(tmp, []byte("half a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := query(t, root, "SELECT country_code, count(*) AS n, min(event_date) AS d FROM users_created GROUP BY 1 ORDER BY 1")
	if want := "country_code n d BE 3 2024-05-06 NL 2 2024-05-06 (2 rows)"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestAnEventWrittenTwiceIntoTwoFilesCountsOnceInTheViewAndTwiceInAllRows(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, 0, 0, 4, "BE")
	// An at-least-once streamer restarted and sent offsets 2 and 3 again,
	// as offsets 4 and 5, which the archiver put into the next file.
	writeCopies(t, root, 0, 4, 2, 2, "BE")
	writeFile(t, root, 0, 6, 1, "BE")
	if got, want := query(t, root, "SELECT count(*) AS n, count(DISTINCT ce_id) AS ids, min(kafka_offset) AS lo, max(kafka_offset) AS hi FROM users_created"), "n ids lo hi 5 5 0 6 (1 rows)"; got != want {
		t.Errorf("users_created: %q, want %q (each event once, its first copy kept)", got, want)
	}
	if got, want := query(t, root, "SELECT count(*) AS n FROM users_created_all"), "n 7 (1 rows)"; got != want {
		t.Errorf("users_created_all: %q, want %q (every stored row)", got, want)
	}
	if got, want := query(t, root, "SELECT kafka_offset FROM users_created WHERE ce_id = '0-3'"), "kafka_offset 3 (1 rows)"; got != want {
		t.Errorf("the copy kept: %q, want %q (the first by offset)", got, want)
	}
}

func TestAnEmptyLakeSaysSo(t *testing.T) {
	if _, err := lakequery.Open(context.Background(), t.TempDir(), "users.created"); !errors.Is(err, lakequery.ErrEmpty) {
		t.Errorf("empty lake: %v, want ErrEmpty", err)
	}
}

func TestOnlyAFileLakeIsReadInPlace(t *testing.T) {
	if root, ok, err := lakequery.Local("file:///var/lake"); err != nil || !ok || root != "/var/lake" {
		t.Errorf("file:///var/lake: %q, %v, %v", root, ok, err)
	}
	if _, ok, err := lakequery.Local("s3://bucket/prod?region=eu-west-1"); err != nil || ok {
		t.Errorf("s3://bucket/prod is mirrored, not read in place: %v, %v", ok, err)
	}
}
