package userdb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/migrations"
	"github.com/userstream/userstream/userdb"
)

func TestCheckAPIVersionMeasuresTheVersionAgainstTheRealColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return migrations.Migrate(ctx, c.Conn()) }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, version string
		ok            bool
		columnTakes   bool // whether an INSERT with this version succeeds
	}{
		{"a short version fits", "1.2.3", true, true},
		{"twenty characters fit", strings.Repeat("v", 20), true, true},
		{"twenty multibyte characters fit, since varchar counts characters", strings.Repeat("é", 20), true, true},
		{"twenty-one characters are refused", strings.Repeat("v", 21), false, false},
		{"a git describe with a long hash is refused", "1.4.0-37-g0123456789abcdef", false, false},
		{"an empty version is refused, though the column would take it", "", false, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := userdb.New(pool, tc.version)
			err := store.CheckAPIVersion(ctx)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckAPIVersion(%q) = %v, want ok=%v", tc.version, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "VERSION") && tc.version != "" {
				t.Errorf("the error %q does not say to change VERSION", err)
			}
			// The check measures what the column really takes.
			_, ierr := store.Create(ctx, userdb.NewUser{Username: "version-" + string(rune('a'+i)), CountryCode: "BE", CreatedAt: time.Unix(0, 0).UTC()})
			if tc.columnTakes != (ierr == nil) {
				t.Errorf("the insert gave %v, want success=%v", ierr, tc.columnTakes)
			}
		})
	}
}
