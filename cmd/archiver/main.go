// Command archiver consumes users.created in a Kafka consumer group and
// writes the events into a lake of immutable Parquet files (LAKE_URL:
// file://, s3://, gs:// or azblob://), each named from its partition and
// offsets, with offsets committed only after the file is durable.
//
//	archiver [run]        archive (default)
//	archiver healthcheck  exit 0 when the local /healthz answers (for containers)
//	archiver version
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/internal/envflag"
	"github.com/userstream/userstream/internal/jemalloc"
	"github.com/userstream/userstream/internal/probe"
	"github.com/userstream/userstream/lake"
)

var version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := NewMain().Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "archiver:", err)
		os.Exit(1)
	}
}

// Main is the archiver program.
type Main struct {
	Log zerolog.Logger
}

// NewMain returns a Main that logs JSON to stderr.
func NewMain() *Main {
	return &Main{Log: zerolog.New(os.Stderr).With().Timestamp().Str("service", "archiver").Logger()}
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
	case "healthcheck":
		c, err := parseConfig("healthcheck", args)
		if err != nil {
			return err
		}
		return probe.Healthz(ctx, c.metricsAddr)
	case "version":
		fmt.Println(version)
		return nil
	}
	return fmt.Errorf("unknown command %q (want run, healthcheck or version)", cmd)
}

type config struct {
	lakeURL        string
	topic          string
	group          string
	roll           archiver.Policy
	spoolDir       string
	shutdown       time.Duration
	metricsAddr    string
	logLevel       string
	kafkaPropsFile string
	pprof          bool
}

func parseConfig(name string, args []string) (config, error) {
	fs := envflag.New("archiver " + name)
	lakeURL := fs.String("lake-url", "LAKE_URL", "file://lake", "where the Parquet files go: file:///path (or file://relative/path), s3://bucket/prefix?region=…, gs://bucket/prefix, azblob://container/prefix")
	topic := fs.String("topic", "KAFKA_TOPIC", "users.created", "Kafka topic to archive")
	group := fs.String("group", "KAFKA_GROUP_ID", "userstream-archiver", "consumer group: archivers in one group split the partitions")
	propsFile := fs.String("kafka-properties", "KAFKA_PROPERTIES_FILE", "", "librdkafka properties file (key=value lines), e.g. for SASL/TLS")
	rollBytes := fs.Int("roll-bytes", "ROLL_BYTES", 128<<20, "roll a file before its estimated size passes this many bytes")
	rollEvents := fs.Int("roll-events", "ROLL_EVENTS", 1_000_000, "roll a file at this many events")
	rollAge := fs.Duration("roll-age", "ROLL_AGE", 5*time.Minute, "roll a file this long after its first event arrived")
	openFiles := fs.Int("max-open-files", "MAX_OPEN_FILES", 16, "files filled at once, of every partition and event date together (each holds a row group in memory); the least recently written rolls to make room")
	rowGroup := fs.Int("row-group-rows", "ROW_GROUP_ROWS", int(eventfile.DefaultRowGroupRows), "rows per Parquet row group (held in memory while it fills)")
	spool := fs.String("spool-dir", "SPOOL_DIR", os.TempDir(), "local folder for the files being filled (unlinked at once, so a crash leaves nothing)")
	shutdown := fs.Duration("shutdown-timeout", "SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM may take to publish the open files")
	metricsAddr := fs.String("metrics-addr", "METRICS_ADDR", ":8082", "address of /healthz, /readyz and /metrics")
	logLevel := fs.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	pprofOn := fs.Bool("pprof", "PPROF", false, "serve Go profiles at /debug/pprof/ on the metrics address")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	c := config{lakeURL: *lakeURL, topic: *topic, group: *group, spoolDir: *spool, shutdown: *shutdown,
		metricsAddr: *metricsAddr, logLevel: *logLevel, kafkaPropsFile: *propsFile, pprof: *pprofOn,
		roll: archiver.Policy{MaxBytes: int64(*rollBytes), MaxEvents: int64(*rollEvents), MaxAge: *rollAge, RowGroupRows: int64(*rowGroup), MaxOpenFiles: *openFiles}}
	if c.roll.MaxBytes <= 0 || c.roll.MaxEvents <= 0 || c.roll.MaxAge <= 0 || c.roll.RowGroupRows <= 0 || c.roll.MaxOpenFiles <= 0 {
		return c, errors.New("ROLL_BYTES, ROLL_EVENTS, ROLL_AGE, ROW_GROUP_ROWS and MAX_OPEN_FILES must be positive")
	}
	return c, nil
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
	props, err := kafkaProperties(os.Environ(), c.kafkaPropsFile)
	if err != nil {
		return err
	}
	schemas, err := eventfile.Contracts(envelope.Schemas)
	if err != nil {
		return err
	}
	l, err := lake.Open(ctx, c.lakeURL)
	if err != nil {
		return err
	}
	defer l.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := archiver.New(archiver.Config{Topic: c.topic, Group: c.group, Properties: props, Roll: c.roll,
		SpoolDir: c.spoolDir, Shutdown: c.shutdown}, l, schemas, log, archiver.NewMetrics(reg))

	ln, err := net.Listen("tcp", c.metricsAddr)
	if err != nil {
		return fmt.Errorf("listen on METRICS_ADDR %s: %w", c.metricsAddr, err)
	}
	handler := a.Handler(reg)
	if c.pprof {
		handler = probe.WithProfiles(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Info().Str("lake", lake.Describe(c.lakeURL)).Str("topic", c.topic).Str("group", c.group).Str("kafka", props["bootstrap.servers"]).
		Int64("roll_bytes", c.roll.MaxBytes).Int64("roll_events", c.roll.MaxEvents).Str("roll_age", c.roll.MaxAge.String()).Int("max_open_files", c.roll.MaxOpenFiles).
		Str("metrics_addr", ln.Addr().String()).Str("version", version).Str("c_allocator", jemalloc.Name).Msg("archiver starting")

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
		return a.Run(gctx)
	})
	err = g.Wait()
	log.Info().Msg("archiver stopped")
	return err
}
