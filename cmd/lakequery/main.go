// Command lakequery runs SQL over the archiver's lake with DuckDB. The lake's
// topic is a view (users.created → users_created, each event once; every
// stored row in users_created_all) over every Parquet file, with event_date
// from the Hive partition folders. LAKE_URL takes the archiver's forms: a
// file:// lake is read in place; an object store's files are mirrored into a
// local cache first (they are immutable, so each is fetched once).
//
//	lakequery [--lake-url file://.data/lake] "SELECT country_code, count(*) FROM users_created GROUP BY 1"
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/userstream/userstream/internal/envflag"
	"github.com/userstream/userstream/lake"
	_ "github.com/userstream/userstream/lake/objectstores"
	"github.com/userstream/userstream/lakequery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := NewMain().Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lakequery:", err)
		os.Exit(1)
	}
}

// Main is the lakequery program.
type Main struct {
	Out io.Writer
}

// NewMain returns a Main that prints to stdout.
func NewMain() *Main { return &Main{Out: os.Stdout} }

// Run runs the SQL in the arguments and prints the rows as aligned columns.
func (m *Main) Run(ctx context.Context, args []string) error {
	fs := envflag.New("lakequery")
	lakeURL := fs.String("lake-url", "LAKE_URL", "file://lake", "the archiver's lake: file:///path, s3://bucket/prefix?…, gs://bucket/prefix, azblob://container/prefix")
	topic := fs.String("topic", "KAFKA_TOPIC", "users.created", "archived topic; its view is named after it with _ for .")
	cacheDir := fs.String("cache-dir", "LAKE_CACHE_DIR", "", "where an object store's files are mirrored (default: the user's cache folder)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := strings.TrimSpace(strings.Join(fs.FlagSet.Args(), " "))
	if q == "" {
		return fmt.Errorf("no SQL given: lakequery \"SELECT count(*) FROM %s\"", lakequery.View(*topic))
	}
	root, err := localRoot(ctx, *lakeURL, *topic, *cacheDir)
	if err != nil {
		return err
	}
	db, err := lakequery.Open(ctx, root, *topic)
	if errors.Is(err, lakequery.ErrEmpty) {
		return fmt.Errorf("%s: %w (the archiver writes a file once per roll interval)", lake.Describe(*lakeURL), err)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	return lakequery.Print(m.Out, rows)
}

// localRoot is the folder DuckDB reads: the lake itself for file://, else
// a mirror of the topic's files in the cache, brought up to date now.
func localRoot(ctx context.Context, lakeURL, topic, cacheDir string) (string, error) {
	root, local, err := lakequery.Local(lakeURL)
	if err != nil || local {
		return root, err
	}
	l, err := lake.Open(ctx, lakeURL)
	if err != nil {
		return "", err
	}
	defer l.Close()
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache folder (set LAKE_CACHE_DIR): %w", err)
		}
		cacheDir = filepath.Join(base, "userstream", "lake")
	}
	// One folder per lake URL, endpoint and region included; the folder's
	// name is a hash, so no part of the URL shows.
	dir := filepath.Join(cacheDir, fmt.Sprintf("%x", sha256.Sum256([]byte(lakeURL)))[:16])
	n, err := l.Mirror(ctx, topic, dir)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "lakequery: %d new files fetched from %s into %s\n", n, lake.Describe(lakeURL), dir)
	return dir, nil
}
