package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/migrations"
	"github.com/userstream/userstream/replication"
)

// PrepareDatabase migrates the database and creates the slot before any test
// insert, so every row the test writes is streamed.
func PrepareDatabase(t testing.TB, dsn, slot string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := migrations.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := replication.CreateSlot(ctx, conn, slot, true); err != nil {
		t.Fatal(err)
	}
}

// WithServerOption returns dsn with a server setting for its connections
// (options=-c name=value), e.g. a short wal_sender_timeout for one process.
func WithServerOption(t testing.TB, dsn, setting string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c "+setting)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgconn does not read + as a space
	return u.String()
}
