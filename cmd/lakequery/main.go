// Command lakequery runs SQL over the archiver's lake with DuckDB. The lake's
// topic is a view (users.created → users_created) over every Parquet file,
// with event_date from the Hive partition folders.
//
//	lakequery [--lake-url file://.data/lake] "SELECT country_code, count(*) FROM users_created GROUP BY 1"
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/userstream/userstream/internal/envflag"
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
	lakeURL := fs.String("lake-url", "LAKE_URL", "file://lake", "the archiver's lake (file:// only)")
	topic := fs.String("topic", "KAFKA_TOPIC", "users.created", "archived topic; its view is named after it with _ for .")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := strings.TrimSpace(strings.Join(fs.FlagSet.Args(), " "))
	if q == "" {
		return fmt.Errorf("no SQL given: lakequery \"SELECT count(*) FROM %s\"", lakequery.View(*topic))
	}
	root, err := lakequery.Root(*lakeURL)
	if err != nil {
		return err
	}
	db, err := lakequery.Open(ctx, root, *topic)
	if errors.Is(err, lakequery.ErrEmpty) {
		return fmt.Errorf("%s: %w (the archiver writes a file once per roll interval)", root, err)
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
	return print(m.Out, rows)
}

func print(out io.Writer, rows *sql.Rows) error {
	types, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	cols := make([]string, len(types))
	for i, ct := range types {
		cols[i] = ct.Name()
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read row: %w", err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = cell(v, types[i].DatabaseTypeName())
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "(%d rows)\n", n)
	return nil
}

func cell(v any, dbType string) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		if dbType == "DATE" {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format("2006-01-02 15:04:05.999999Z07:00")
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}
