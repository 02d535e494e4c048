// Package pgdsn describes PostgreSQL connection strings for logs without
// their secrets.
package pgdsn

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Describe returns "user@host:port/database" for a DSN (URL or key=value
// form), never its password. A DSN that does not parse is described as
// "unparsable DSN", since its text may hold a password.
func Describe(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "unparsable DSN"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
