package migrations_test

import (
	"context"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/migrations"
)

func TestMigrateIsIdempotentAndSafeWhenProcessesRace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)

	var g errgroup.Group
	for i := 0; i < 4; i++ {
		g.Go(func() error {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			return migrations.Migrate(ctx, conn)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent migrate: %v", err)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := migrations.Migrate(ctx, conn); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var applied int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) < 6 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	if applied != len(files) {
		t.Fatalf("schema_migrations has %d rows, want %d (each migration once)", applied, len(files))
	}

	var cols []string
	err = conn.QueryRow(ctx, `SELECT array_agg(a.attname ORDER BY a.attnum)
		FROM pg_publication_rel pr
		JOIN pg_publication p ON p.oid = pr.prpubid
		JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs)
		WHERE p.pubname = 'users_pub' AND NOT p.pubupdate AND NOT p.pubdelete AND p.pubinsert`).Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cols, []string{"id", "username", "country_code", "created_at"}; !slices.Equal(got, want) {
		t.Fatalf("users_pub columns = %v, want %v (inserts only)", got, want)
	}

	for _, tc := range []struct {
		role, privilege string
		want            bool
	}{
		{"userstream_api", "INSERT", true},
		{"userstream_api", "SELECT", true},
		{"userstream_api", "UPDATE", false},
		{"userstream_api", "DELETE", false},
		{"userstream_streamer", "SELECT", false}, // column-level only, below
		{"userstream_streamer", "INSERT", false},
	} {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT has_table_privilege($1, 'users', $2)", tc.role, tc.privilege).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s has %s on users = %v, want %v", tc.role, tc.privilege, got, tc.want)
		}
	}
	for _, tc := range []struct {
		column string
		want   bool
	}{
		{"id", true}, {"username", true}, {"country_code", true}, {"created_at", true},
		{"is_a_dog", false}, {"api_version", false},
	} {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT has_column_privilege('userstream_streamer', 'users', $1, 'SELECT')", tc.column).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("userstream_streamer may SELECT users.%s = %v, want %v", tc.column, got, tc.want)
		}
	}
}
