package backfill

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/projection"
)

// pgx reports a failed query through the rows it returns, which then
// describe no columns: the snapshot and backfill must report the failure,
// not a projection that finds no id column.
func TestAFailedChunkQueryIsReportedAsTheQueryNotAsAColumnProblem(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	e2e.PrepareDatabase(t, dsn, testenv.Name(t, "slot"))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('u', 'BE', now(), 'test');
		SET statement_timeout = '50ms'`); err != nil {
		t.Fatal(err)
	}
	rows, _, _, err := selectUsers(ctx, conn, projection.UserCreated{}, 0, 100, 10, " AND pg_sleep(0.5) IS NOT NULL")
	if err == nil {
		rows.Close()
		t.Fatal("a chunk query cancelled by statement_timeout succeeded")
	}
	if !strings.Contains(err.Error(), "statement timeout") || strings.Contains(err.Error(), "not replicated") {
		t.Fatalf("got %q, want the query's own failure (statement timeout)", err)
	}
}
