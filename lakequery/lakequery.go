// Package lakequery opens the lake with DuckDB: two views per archived
// topic over every Parquet file in it, with Hive partitioning (event_date)
// and columns merged by name across contract versions. View(topic) holds
// each event once (the first copy by partition and offset of every ce_id),
// so counts are right whatever the delivery mode; AllRows(topic) holds every
// row as stored, copies included. Only this package and cmd/lakequery link
// DuckDB; the streamer, the API and the archiver do not.
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

	"github.com/userstream/userstream/lake"
)

// ErrEmpty means the lake holds no file of the topic yet.
var ErrEmpty = errors.New("the lake holds no Parquet file of this topic yet")

// Local turns a file:// lake URL (as the archiver takes it) into its folder;
// ok is false for object stores, which are read through a local mirror.
func Local(lakeURL string) (root string, ok bool, err error) {
	u, err := url.Parse(lakeURL)
	if err != nil {
		// url.Parse's error quotes the URL, credentials and all.
		return "", false, fmt.Errorf("lake URL %s is not a URL", lake.Describe(lakeURL))
	}
	if u.Scheme != "file" {
		return "", false, nil
	}
	local := u.Path
	if u.Host != "" && u.Host != "localhost" {
		local = u.Host + u.Path
	}
	root, err = filepath.Abs(local)
	return root, true, err
}

// View is the name of the deduplicated view over topic: users.created →
// users_created.
func View(topic string) string { return strings.NewReplacer(".", "_", "-", "_").Replace(topic) }

// AllRows is the name of the view over every stored row of topic,
// duplicates included: users.created → users_created_all.
func AllRows(topic string) string { return View(topic) + "_all" }

// Open returns an in-memory DuckDB with the views View(topic) and
// AllRows(topic) over the lake's files under the folder root. It fails with
// ErrEmpty while no file exists.
func Open(ctx context.Context, root, topic string) (*sql.DB, error) {
	if _, err := os.Stat(filepath.Join(root, topic)); errors.Is(err, os.ErrNotExist) {
		return nil, ErrEmpty
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	db.SetMaxOpenConns(1) // one in-memory database, one connection: the views stay visible
	glob := filepath.ToSlash(filepath.Join(root, filepath.FromSlash(lake.Glob(topic))))
	for _, q := range []string{
		fmt.Sprintf(`CREATE VIEW %s AS SELECT * FROM read_parquet('%s', hive_partitioning = true, union_by_name = true)`,
			AllRows(topic), strings.ReplaceAll(glob, "'", "''")),
		// An at-least-once streamer may write an event twice, into two
		// files; every copy has the same ce_id, and the first one stays.
		fmt.Sprintf(`CREATE VIEW %s AS SELECT * FROM %s QUALIFY row_number() OVER (PARTITION BY ce_id ORDER BY kafka_partition, kafka_offset) = 1`,
			View(topic), AllRows(topic)),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			db.Close()
			if strings.Contains(err.Error(), "No files found") {
				return nil, ErrEmpty
			}
			return nil, fmt.Errorf("create the views of %s: %w", topic, err)
		}
	}
	return db, nil
}
