package replication

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// ServerMajor is the server's major version (15, 16, 17, 18, ...), from the
// server_version it reports when a connection starts ("17.10",
// "18beta1", "16.4 (Debian 16.4-1.pgdg120+1)"); 0 when it reports none.
// server_version_num is not among the parameters PostgreSQL reports.
func ServerMajor(conn *pgconn.PgConn) int { return parseMajor(conn.ParameterStatus("server_version")) }

func parseMajor(v string) int {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// The versions whose behaviour the streamer depends on.
const (
	// FailoverSlotsSince is the first major with failover slots: a logical
	// slot a physical standby keeps in sync, usable after promotion.
	FailoverSlotsSince = 17
	// originOptionSince is the first major whose pgoutput takes the origin
	// option.
	originOptionSince = 16
)

// startOptions are the pgoutput options the streamer asks for.
func startOptions(publication string, major int) []string {
	args := []string{"proto_version '1'", "publication_names '" + publication + "'"}
	if major >= originOptionSince {
		// Changes that arrived through another replication origin are user
		// rows too: never let a default filter them away.
		args = append(args, "origin 'any'")
	}
	return args
}

// Identify connects for replication and returns IDENTIFY_SYSTEM's answer:
// the cluster's system identifier and the server's current timeline, which
// a promotion or a point-in-time recovery moves on.
func Identify(ctx context.Context, t Target) (pglogrepl.IdentifySystemResult, error) {
	conn, err := t.connectReplication(ctx, "userstream-streamer")
	if err != nil {
		return pglogrepl.IdentifySystemResult{}, err
	}
	defer conn.Close(context.Background())
	id, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return id, fmt.Errorf("identify system: %w", err)
	}
	return id, nil
}
