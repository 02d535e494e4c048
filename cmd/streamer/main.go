// Command streamer reads PostgreSQL logical replication and produces a
// user.created.v1 event to Kafka for every committed insert into users.
//
//	streamer [run]              stream (default)
//	streamer status [--json]    the slot's state, lag and WAL status, and what to do
//	streamer drop-slot --yes    drop the slot (PostgreSQL frees its WAL)
//	streamer backfill           produce events for existing users (--after-id, --up-to-id)
//	streamer healthcheck        exit 0 when the local /healthz answers (for containers)
//	streamer version
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/internal/envflag"
	"github.com/userstream/userstream/internal/jemalloc"
	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/internal/probe"
	"github.com/userstream/userstream/internal/promreg"
	"github.com/userstream/userstream/migrations"
	"github.com/userstream/userstream/replication"
	"github.com/userstream/userstream/streamer"
)

var version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := NewMain().Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamer:", err)
		os.Exit(1)
	}
}

// Main is the streamer program.
type Main struct {
	Log zerolog.Logger
}

// NewMain returns a Main that logs JSON to stderr.
func NewMain() *Main {
	return &Main{Log: zerolog.New(os.Stderr).With().Timestamp().Str("service", "streamer").Logger()}
}

// Run runs the subcommand named by args[0] (run when absent).
func (m *Main) Run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return m.run(ctx, args)
	case "status":
		return m.status(ctx, args)
	case "drop-slot":
		return m.dropSlot(ctx, args)
	case "backfill":
		return m.backfill(ctx, args)
	case "largest-id":
		return m.largestID(ctx, args)
	case "accept-timeline":
		return m.acceptTimeline(ctx, args)
	case "healthcheck":
		return healthcheck(ctx, args)
	case "version":
		fmt.Println(version)
		return nil
	}
	return fmt.Errorf("unknown command %q (want run, status, drop-slot, backfill, largest-id, accept-timeline, healthcheck or version)", cmd)
}

type config struct {
	databaseURL    string
	slot           string
	publication    string
	startLSN       pglogrepl.LSN
	topic          string
	partitions     int
	heartbeat      time.Duration
	shutdown       time.Duration
	metricsAddr    string
	migrate        bool
	logLevel       string
	pprof          bool
	yes            bool
	afterID        int64
	upToID         int64
	kafkaPropsFile string
	createSlot     bool
	poison         string
	delivery       string
	snapshot       string
	txnInterval    time.Duration
	readLinger     time.Duration
	deadLetter     string
	missing        bool
	slotFailover   bool
}

func parseConfig(name string, args []string) (config, error) {
	fs := envflag.New("streamer " + name)
	databaseURL := fs.String("database-url", "DATABASE_URL", "", "PostgreSQL DSN of a role with REPLICATION and SELECT on users")
	slot := fs.String("slot", "REPLICATION_SLOT", "users_cdc", "logical replication slot")
	publication := fs.String("publication", "PUBLICATION", "users_pub", "publication the slot reads")
	startLSN := fs.String("start-lsn", "START_LSN", "", "start at this LSN (at or after the slot's confirmed position) instead of resuming from the slot")
	topic := fs.String("topic", "KAFKA_TOPIC", "users.created", "Kafka topic for user.created events")
	partitions := fs.Int("partitions", "KAFKA_TOPIC_PARTITIONS", 6, "partitions when the streamer creates the topic")
	propsFile := fs.String("kafka-properties", "KAFKA_PROPERTIES_FILE", "", "librdkafka properties file (key=value lines), e.g. for SASL/TLS")
	heartbeat := fs.Duration("heartbeat-interval", "HEARTBEAT_INTERVAL", 0, "write a logical heartbeat message this often (0: off)")
	shutdown := fs.Duration("shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long to wait for outstanding deliveries at exit")
	metricsAddr := fs.String("metrics-addr", "METRICS_ADDR", ":8081", "address of /healthz, /readyz and /metrics")
	migrate := fs.Bool("migrate", "MIGRATE", true, "apply schema migrations at start-up (needs the schema owner's DSN)")
	logLevel := fs.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	pprofOn := fs.Bool("pprof", "PPROF", false, "serve Go profiles at /debug/pprof/ on the metrics address")
	slotFailover := fs.Bool("slot-failover", "SLOT_FAILOVER", true, "PostgreSQL 17+: make the slot a failover slot, so a standby with slot sync keeps a copy the streamer goes on from after a failover")
	createSlot := fs.Bool("create-slot", "CREATE_SLOT", false, "create a missing slot (and publication) although the topic already holds events: once, to recover from a lost slot, then unset")
	delivery := fs.String("delivery", "DELIVERY", "at-least-once", "at-least-once, or exactly-once (Kafka transactions; consumers read with isolation.level=read_committed)")
	txnInterval := fs.Duration("transaction-interval", "TRANSACTION_INTERVAL", 10*time.Millisecond, "exactly-once: how long a Kafka transaction stays open while records arrive (what a read_committed consumer waits; shorter means more commits)")
	readLinger := fs.Duration("read-linger", "READ_LINGER", streamer.DefaultReadLinger, "once caught up, how long the reader lets small transactions gather before reading them together (fewer wake-ups for up to that much latency; 0: read each at once)")
	snapshot := fs.String("snapshot", "SNAPSHOT", "initial", "initial: the first run also sends the users that existed before it; never: it does not")
	poison := fs.String("poison", "POISON", "dead-letter", "what to do with a change that makes no valid event: dead-letter or stop")
	deadLetter := fs.String("dead-letter-topic", "DEAD_LETTER_TOPIC", "", "topic for changes that make no valid event (default: the topic + .dlq)")
	yes := fs.FlagSet.Bool("yes", false, "confirm drop-slot or accept-timeline")
	missing := fs.FlagSet.Bool("missing", false, "backfill: only users whose key is not in the topic (the recovery after a lost slot)")
	afterID := fs.FlagSet.Int64("after-id", 0, "backfill: users with an id above this")
	upToID := fs.FlagSet.Int64("up-to-id", 0, "backfill: users with an id up to this (0: the largest now)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	c := config{databaseURL: *databaseURL, slot: *slot, publication: *publication, topic: *topic, partitions: *partitions,
		heartbeat: *heartbeat, shutdown: *shutdown, metricsAddr: *metricsAddr, migrate: *migrate, logLevel: *logLevel,
		pprof: *pprofOn, yes: *yes, afterID: *afterID, upToID: *upToID, kafkaPropsFile: *propsFile,
		createSlot: *createSlot, slotFailover: *slotFailover, poison: *poison, deadLetter: *deadLetter, missing: *missing, delivery: *delivery, snapshot: *snapshot, txnInterval: *txnInterval, readLinger: *readLinger}
	if c.snapshot != string(streamer.SnapshotInitial) && c.snapshot != string(streamer.SnapshotNever) {
		return c, fmt.Errorf("SNAPSHOT %q: want initial or never", c.snapshot)
	}
	if c.delivery != string(streamer.AtLeastOnce) && c.delivery != string(streamer.ExactlyOnce) {
		return c, fmt.Errorf("DELIVERY %q: want at-least-once or exactly-once", c.delivery)
	}
	if c.txnInterval < time.Millisecond || c.txnInterval > 10*time.Second {
		return c, fmt.Errorf("TRANSACTION_INTERVAL %s: want between 1ms and 10s", c.txnInterval)
	}
	if c.readLinger < 0 || c.readLinger > time.Second {
		return c, fmt.Errorf("READ_LINGER %s: want between 0 (off) and 1s", c.readLinger)
	}
	if c.poison != string(streamer.PoisonDeadLetter) && c.poison != string(streamer.PoisonStop) {
		return c, fmt.Errorf("POISON %q: want dead-letter or stop", c.poison)
	}
	if *startLSN != "" {
		lsn, err := pglogrepl.ParseLSN(*startLSN)
		if err != nil {
			return c, fmt.Errorf("START_LSN %q: want an LSN such as 0/16B3748", *startLSN)
		}
		c.startLSN = lsn
	}
	if c.databaseURL == "" && name != "healthcheck" {
		return c, errors.New("DATABASE_URL (or --database-url) is required")
	}
	return c, nil
}

// streamerConfig is the pipeline's configuration, for run and backfill alike.
func (c config) streamerConfig(kafka kafkaSettings) streamer.Config {
	sc := streamer.Config{
		DatabaseURL: c.databaseURL, Slot: c.slot, Publication: c.publication, StartLSN: c.startLSN,
		Kafka:             kafka.kafkaConfig(c),
		HeartbeatInterval: c.heartbeat, ShutdownTimeout: c.shutdown,
		CreateSlot: c.createSlot, DisableSlotFailover: !c.slotFailover, Poison: streamer.Poison(c.poison), Delivery: streamer.Delivery(c.delivery), Snapshot: streamer.Snapshot(c.snapshot),
		TransactionInterval: c.txnInterval, ReadLinger: c.readLinger,
	}
	if c.readLinger == 0 {
		sc.ReadLinger = -1 // READ_LINGER=0: off, not the default
	}
	return sc
}

func (m *Main) run(ctx context.Context, args []string) error {
	c, err := parseConfig("run", args)
	if err != nil {
		return err
	}
	level, err := zerolog.ParseLevel(c.logLevel)
	if err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := m.Log.Level(level)
	// The live heap is small and the allocation rate high: less GC work for
	// a little memory, under a ceiling. GOGC and GOMEMLIMIT still override.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(96 << 20)
	}
	props, err := loadKafka(log, c)
	if err != nil {
		return err
	}
	if c.migrate {
		if err := migrate(ctx, c.databaseURL); err != nil {
			return err
		}
	}

	reg := promreg.New()
	s := streamer.New(c.streamerConfig(props), log, streamer.NewMetrics(reg))

	ln, err := net.Listen("tcp", c.metricsAddr)
	if err != nil {
		return fmt.Errorf("listen on METRICS_ADDR %s: %w", c.metricsAddr, err)
	}
	handler := s.Handler(reg)
	if c.pprof {
		handler = probe.WithProfiles(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Info().Str("database", pgdsn.Describe(c.databaseURL)).Str("kafka", props.values["bootstrap.servers"]).
		Str("metrics_addr", ln.Addr().String()).Str("version", version).Str("c_allocator", jemalloc.Name).Msg("streamer starting")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer func() {
			shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutCtx)
		}()
		return s.Run(gctx)
	})
	err = g.Wait()
	log.Info().Msg("streamer stopped")
	return err
}

func migrate(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("migrate: connect to %s: %w", pgdsn.Describe(dsn), err)
	}
	defer conn.Close(context.Background())
	if err := migrations.Migrate(ctx, conn); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// command is the streamer a one-off subcommand works with (no metrics are
// served), and its configuration.
func (m *Main) command(name string, args []string) (*streamer.Streamer, config, error) {
	c, err := parseConfig(name, args)
	if err != nil {
		return nil, c, err
	}
	props, err := loadKafka(m.Log, c)
	if err != nil {
		return nil, c, err
	}
	return streamer.New(c.streamerConfig(props), m.Log, streamer.NewMetrics(prometheus.NewRegistry())), c, nil
}

func (m *Main) backfill(ctx context.Context, args []string) error {
	s, c, err := m.command("backfill", args)
	if err != nil {
		return err
	}
	res, err := s.Backfill(ctx, streamer.BackfillRange{AfterID: c.afterID, UpToID: c.upToID, Missing: c.missing})
	m.Log.Info().Int("events", res.Produced).Int("already_in_topic", res.Present).Int("poison_rows", res.Poison).
		Int64("after_id", c.afterID).Bool("missing_only", c.missing).Msg("backfill acknowledged by Kafka")
	return err
}

// largestID prints the largest user id in Kafka and the SQL that moves the
// id sequence past it: the first step after restoring the database.
func (m *Main) largestID(ctx context.Context, args []string) error {
	s, _, err := m.command("largest-id", args)
	if err != nil {
		return err
	}
	id, err := s.LargestID(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("largest user id in Kafka: %d\nbefore accepting writes, as the table's owner:\n  SELECT setval(pg_get_serial_sequence('public.users', 'id'), greatest(%d, (SELECT coalesce(max(id), 1) FROM public.users)));\n", id, id)
	return nil
}

// acceptTimeline records the server's timeline as the one the slot streams
// from, after the streamer refused an older one on purpose restored.
func (m *Main) acceptTimeline(ctx context.Context, args []string) error {
	s, c, err := m.command("accept-timeline", args)
	if err != nil {
		return err
	}
	if !c.yes {
		return fmt.Errorf("accept-timeline makes the streamer stream from %s although a newer timeline of its cluster was streamed from: only for a server restored from an older copy on purpose, never for a former primary that came back after a failover; run again with --yes", pgdsn.Describe(c.databaseURL))
	}
	systemID, timeline, err := s.AcceptTimeline(ctx)
	if err != nil {
		return err
	}
	m.Log.Info().Str("system_id", systemID).Int32("timeline", timeline).Str("slot", c.slot).Msg("timeline accepted: the streamer streams from this server")
	return nil
}

func (m *Main) dropSlot(ctx context.Context, args []string) error {
	c, err := parseConfig("drop-slot", args)
	if err != nil {
		return err
	}
	if !c.yes {
		return fmt.Errorf("drop-slot forgets where streaming stands: changes after the slot's position that are not in Kafka will not be streamed; run again with --yes to drop slot %s", c.slot)
	}
	conn, err := pgx.Connect(ctx, c.databaseURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", pgdsn.Describe(c.databaseURL), err)
	}
	defer conn.Close(context.Background())
	if err := replication.DropSlot(ctx, conn, c.slot); err != nil {
		return err
	}
	m.Log.Info().Str("slot", c.slot).Msg("slot dropped")
	return nil
}

func healthcheck(ctx context.Context, args []string) error {
	c, err := parseConfig("healthcheck", args)
	if err != nil {
		return err
	}
	return probe.Healthz(ctx, c.metricsAddr)
}
