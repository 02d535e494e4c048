package replication

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Target is the server a streaming session works with. A DSN may name
// several hosts (with target_session_attrs=read-write, to find the primary
// after a failover), and each connection picks one by itself: during a
// failover two connections of one session could land on two servers, and a
// slot position read on one would be streamed from on the other. So a
// session pins every connection to the server its first one reached.
type Target struct {
	DSN    string
	Server string // host:port its connections must reach; empty: any of the DSN's
}

// PinnedTo is the target of dsn pinned to the server conn reached.
func PinnedTo(dsn string, conn *pgx.Conn) Target {
	t := Target{DSN: dsn}
	if c := conn.PgConn().Conn(); c != nil && c.RemoteAddr() != nil && c.RemoteAddr().Network() == "tcp" {
		t.Server = c.RemoteAddr().String()
	}
	return t
}

// pin makes cfg connect to the target's server only: a connection to any
// other of the DSN's hosts is closed at once, as an unreachable host would
// fail. The comparison is by the address the connection reached, in Go's
// form, whatever form the DSN wrote it in.
func (t Target) pin(cfg *pgconn.Config) {
	if t.Server == "" {
		return
	}
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if got := c.RemoteAddr().String(); got != t.Server {
			c.Close()
			return nil, fmt.Errorf("%s is not %s, the server this session checked", got, t.Server)
		}
		return c, nil
	}
}

// Connect opens a SQL connection to the target's server.
func (t Target) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		// The error would quote the DSN, password included.
		return nil, errors.New("parse DSN: it does not parse as a PostgreSQL DSN")
	}
	t.pin(&cfg.Config)
	return pgx.ConnectConfig(ctx, cfg)
}

// connectReplication opens a logical replication connection (replication
// commands and SQL) to the target's server.
func (t Target) connectReplication(ctx context.Context, application string, params ...string) (*pgconn.PgConn, error) {
	pcfg, err := pgconn.ParseConfig(t.DSN)
	if err != nil {
		return nil, errors.New("parse DSN: it does not parse as a PostgreSQL DSN")
	}
	pcfg.RuntimeParams["replication"] = "database"
	pcfg.RuntimeParams["application_name"] = application
	for i := 0; i+1 < len(params); i += 2 {
		pcfg.RuntimeParams[params[i]] = params[i+1]
	}
	t.pin(pcfg)
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return conn, nil
}
