package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/replication"
	"github.com/userstream/userstream/sql"
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
	if err := sql.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := replication.CreateSlot(ctx, conn, slot); err != nil {
		t.Fatal(err)
	}
}
