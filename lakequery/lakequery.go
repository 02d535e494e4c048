// Package lakequery opens the lake with DuckDB: one view per archived topic,
// over every Parquet file in it with Hive partitioning (event_date) and
// columns merged by name across contract versions. Only this package and
// cmd/lakequery link DuckDB; the streamer, the API and the archiver do not.
package lakequery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" database/sql driver
)

// ErrEmpty means the lake holds no file of the topic yet.
var ErrEmpty = errors.New("the lake holds no Parquet file of this topic yet")

// Root turns a file:// lake URL (as the archiver takes it) into its folder.
// DuckDB reads object stores through its httpfs extension, which is not
// bundled: point it at s3:// yourself (see the README).
func Root(lakeURL string) (string, error) {
	u, err := url.Parse(lakeURL)
	if err != nil || u.Scheme != "file" {
		return "", errors.New("lake URL: lakequery reads file:// lakes (file:///path/to/lake)")
	}
	local := u.Path
	if u.Host != "" && u.Host != "localhost" {
		local = u.Host + u.Path
	}
	return filepath.Abs(local)
}

// View is the name of the view over topic: users.created → users_created.
func View(topic string) string { return strings.NewReplacer(".", "_", "-", "_").Replace(topic) }

// Glob is the pattern of topic's files under root: temporary files of a put
// in progress end in .tmp and never match it.
func Glob(root, topic string) string {
	return filepath.ToSlash(filepath.Join(root, topic)) + "/**/*.parquet"
}

// Open returns an in-memory DuckDB with the view View(topic) over the lake
// at root. It fails with ErrEmpty while no file exists.
func Open(ctx context.Context, root, topic string) (*sql.DB, error) {
	if _, err := os.Stat(filepath.Join(root, topic)); errors.Is(err, os.ErrNotExist) {
		return nil, ErrEmpty
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	db.SetMaxOpenConns(1) // one in-memory database, one connection: the view stays visible
	q := fmt.Sprintf(`CREATE VIEW %s AS SELECT * FROM read_parquet('%s', hive_partitioning = true, union_by_name = true)`,
		View(topic), strings.ReplaceAll(Glob(root, topic), "'", "''"))
	if _, err := db.ExecContext(ctx, q); err != nil {
		db.Close()
		if strings.Contains(err.Error(), "No files found") {
			return nil, ErrEmpty
		}
		return nil, fmt.Errorf("create view %s: %w", View(topic), err)
	}
	return db, nil
}
