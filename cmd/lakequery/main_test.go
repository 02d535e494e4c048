package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/projection"
)

// writeFile puts one archiver file with n users into the lake at root.
func writeFile(t *testing.T, root string, partition int32, first int64, n int, country string) {
	t.Helper()
	schemas, err := eventfile.Contracts(projection.Schemas)
	if err != nil {
		t.Fatal(err)
	}
	s := schemas[projection.UserCreatedType]
	var buf bytes.Buffer
	w := s.NewWriter(&buf, 0)
	for i := 0; i < n; i++ {
		off := first + int64(i)
		row, err := s.Row(eventfile.Record{
			Partition: partition, Offset: off, Key: []byte(fmt.Sprint(off)),
			Value:  []byte(fmt.Sprintf(`{"username":"u%d-%d","country_code":%q,"created_at":"2021-01-01T00:00:00Z"}`, partition, off, country)),
			CEID:   fmt.Sprintf("%d-%d", partition, off),
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
	key := archiver.FileName{Topic: "users.created", Date: "2024-05-06", Partition: partition, First: first, Last: first + int64(n) - 1}.Key()
	path := filepath.Join(root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAQueryGroupsTheWholeLakeAndIgnoresTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, 0, 0, 3, "BE")
	writeFile(t, root, 1, 0, 2, "NL")
	// A put in progress: readers' glob must not match it.
	tmp := filepath.Join(root, "users.created", "event_date=2024-05-06", "users.created+2+00000000000000000000+00000000000000000009.parquet.17f.tmp")
	if err := os.WriteFile(tmp, []byte("half a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m := &Main{Out: &out}
	err := m.Run(context.Background(), []string{"--lake-url", "file://" + root,
		"SELECT country_code, count(*) AS n, min(event_date) AS d FROM users_created GROUP BY 1 ORDER BY 1"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Fields(out.String()), " ")
	want := "country_code n d BE 3 2024-05-06 NL 2 2024-05-06 (2 rows)"
	if got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestAnEmptyLakeSaysSoAndNoSQLIsAnError(t *testing.T) {
	m := &Main{Out: &bytes.Buffer{}}
	err := m.Run(context.Background(), []string{"--lake-url", "file://" + t.TempDir(), "SELECT 1"})
	if err == nil || !strings.Contains(err.Error(), "no Parquet file") {
		t.Errorf("empty lake: %v", err)
	}
	if err := m.Run(context.Background(), []string{"--lake-url", "file://" + t.TempDir()}); err == nil {
		t.Error("no SQL: want an error")
	}
}
