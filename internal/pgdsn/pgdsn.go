// Package pgdsn describes PostgreSQL connection strings for logs without
// their secrets.
package pgdsn

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Describe returns "user@host:port/database" for a DSN (URL or key=value
// form; every host of a multi-host one), never its password. A DSN that does not parse is described as
// "unparsable DSN", since its text may hold a password.
func Describe(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "unparsable DSN"
	}
	// Fallbacks repeat a host once per TLS mode tried.
	hosts := []string{fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	for _, f := range cfg.Fallbacks {
		if h := fmt.Sprintf("%s:%d", f.Host, f.Port); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return fmt.Sprintf("%s@%s/%s", cfg.User, strings.Join(hosts, ","), cfg.Database)
}
