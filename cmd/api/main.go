// Command api runs the users API: POST /users inserts one row into users, in
// one transaction, and nothing else.
//
//	api [serve]        serve HTTP (default)
//	api migrate        apply the schema migrations and exit
//	api healthcheck    exit 0 when the local server answers /healthz (for containers)
//	api version        print the version written into api_version
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/api"
	"github.com/userstream/userstream/internal/envflag"
	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/internal/probe"
	"github.com/userstream/userstream/internal/promreg"
	"github.com/userstream/userstream/migrations"
	"github.com/userstream/userstream/userdb"
)

// version is stamped into every row's api_version; set at build time with
// -ldflags "-X main.version=…" (the Dockerfile's VERSION). serve checks at
// start-up that it fits the api_version column.
var version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := NewMain().Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// Main is the api program.
type Main struct {
	Log zerolog.Logger
}

// NewMain returns a Main that logs JSON to stderr.
func NewMain() *Main {
	return &Main{Log: zerolog.New(os.Stderr).With().Timestamp().Str("service", "api").Logger()}
}

// Run runs the subcommand named by args[0] (serve when absent).
func (m *Main) Run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return m.serve(ctx, args)
	case "migrate":
		return m.migrate(ctx, args)
	case "healthcheck":
		return healthcheck(ctx, args)
	case "version":
		fmt.Println(version)
		return nil
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate, healthcheck or version)", cmd)
	}
}

type config struct {
	databaseURL string
	listenAddr  string
	migrate     bool
	maxConns    int
	logLevel    string
}

func parseConfig(name string, args []string) (config, error) {
	fs := envflag.New("api " + name)
	databaseURL := fs.String("database-url", "DATABASE_URL", "", "PostgreSQL DSN (for serve: a role with INSERT and SELECT on users)")
	listenAddr := fs.String("listen-addr", "LISTEN_ADDR", ":5000", "HTTP listen address")
	migrate := fs.Bool("migrate", "MIGRATE", true, "apply schema migrations at start-up (needs the schema owner's DSN)")
	maxConns := fs.Int("max-conns", "DB_MAX_CONNS", 16, "PostgreSQL pool size")
	logLevel := fs.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	c := config{databaseURL: *databaseURL, listenAddr: *listenAddr, migrate: *migrate, maxConns: *maxConns, logLevel: *logLevel}
	if c.databaseURL == "" && name != "healthcheck" {
		return c, fmt.Errorf("DATABASE_URL (or --database-url) is required")
	}
	return c, nil
}

func (m *Main) serve(ctx context.Context, args []string) error {
	c, err := parseConfig("serve", args)
	if err != nil {
		return err
	}
	level, err := zerolog.ParseLevel(c.logLevel)
	if err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := m.Log.Level(level)

	pool, err := openPool(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if c.migrate {
		if err := migrate(ctx, pool); err != nil {
			return err
		}
	}

	store := userdb.New(pool, version)
	if err := store.CheckAPIVersion(ctx); err != nil {
		return err
	}
	reg := promreg.New()
	srv := api.NewServer(api.Config{Addr: c.listenAddr}, store, log, reg)
	if err := srv.Open(); err != nil {
		return err
	}
	log.Info().Str("addr", srv.Addr()).Str("database", pgdsn.Describe(c.databaseURL)).Str("version", version).Msg("api listening")
	err = srv.Serve(ctx)
	log.Info().Msg("api stopped")
	return err
}

func (m *Main) migrate(ctx context.Context, args []string) error {
	c, err := parseConfig("migrate", args)
	if err != nil {
		return err
	}
	pool, err := openPool(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	m.Log.Info().Str("database", pgdsn.Describe(c.databaseURL)).Msg("migrations applied")
	return nil
}

func openPool(ctx context.Context, c config) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(c.databaseURL)
	if err != nil {
		// The parse error may quote the DSN, password included: do not wrap it.
		return nil, fmt.Errorf("DATABASE_URL does not parse as a PostgreSQL DSN")
	}
	cfg.MaxConns = int32(c.maxConns)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool to %s: %w", pgdsn.Describe(c.databaseURL), err)
	}
	return pool, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	err := pool.AcquireFunc(ctx, func(conn *pgxpool.Conn) error { return migrations.Migrate(ctx, conn.Conn()) })
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// healthcheck asks the local server's /healthz, for container health checks
// where the runtime image has no curl.
func healthcheck(ctx context.Context, args []string) error {
	c, err := parseConfig("healthcheck", args)
	if err != nil {
		return err
	}
	return probe.Healthz(ctx, c.listenAddr)
}
