// Command bench measures the streamer against the ceiling of PostgreSQL's own
// logical decoding (pg_recvlogical on the same WAL range, in the same run),
// commit-to-Kafka latency at steady loads, memory and CPU, and the users API
// against pgbench doing the same INSERT. `make bench` starts a private
// PostgreSQL and broker and runs it; it prints a table and writes
// docs/benchmarks.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	adminDSN string // superuser, database postgres
	kafka    string
	bin      string // built programs
	pgBin    string
	out      string // markdown report
	profDir  string
	window   time.Duration // each steady-load measurement
	bigRows  int
	txns     int
	// brokerPID is devkafka's process, whose CPU time the steady-load
	// phases report; 0 against an external Kafka.
	brokerPID int
}

func fromEnv() (config, error) {
	c := config{
		adminDSN: os.Getenv("BENCH_DATABASE_URL"), kafka: os.Getenv("BENCH_KAFKA"), bin: os.Getenv("BENCH_BIN"),
		pgBin: os.Getenv("BENCH_PG_BIN"), out: os.Getenv("BENCH_OUT"), profDir: os.Getenv("BENCH_PROFILE_DIR"),
		window: 30 * time.Second, bigRows: 1_000_000, txns: 200_000,
	}
	c.brokerPID, _ = strconv.Atoi(os.Getenv("BENCH_BROKER_PID"))
	if os.Getenv("BENCH_QUICK") != "" {
		c.window, c.bigRows, c.txns = 5*time.Second, 100_000, 20_000
	}
	if c.adminDSN == "" || c.kafka == "" || c.bin == "" || c.pgBin == "" {
		return c, fmt.Errorf("BENCH_DATABASE_URL, BENCH_KAFKA, BENCH_BIN and BENCH_PG_BIN are required: run it with make bench")
	}
	return c, nil
}

func run(ctx context.Context) error {
	cfg, err := fromEnv()
	if err != nil {
		return err
	}
	b, err := newBench(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.close()

	var rep report
	rep.started, rep.loadStart = time.Now(), loadAverage()
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"catch-up: one big transaction", func(ctx context.Context) error {
			r, err := b.catchUp(ctx, fmt.Sprintf("one transaction of %d inserts", cfg.bigRows), cfg.bigRows, true, b.insertBig)
			r.minRatio, r.aimRatio = 0.6, 0.8
			rep.catchUps = append(rep.catchUps, r)
			return err
		}},
		{"catch-up: single-row transactions", func(ctx context.Context) error {
			r, err := b.catchUp(ctx, fmt.Sprintf("%d single-row transactions", cfg.txns), cfg.txns, false, b.insertSingles)
			r.minRatio = 1.0
			rep.catchUps = append(rep.catchUps, r)
			return err
		}},
		{"idle memory", func(ctx context.Context) error {
			var err error
			rep.freshIdleRSS, err = b.freshIdleRSS(ctx)
			return err
		}},
		{"latency", func(ctx context.Context) error {
			var err error
			rep.latencies, err = b.latencies(ctx, []int{1000, 5000})
			return err
		}},
		{"archiver", func(ctx context.Context) error {
			var err error
			rep.archive, err = b.archive(ctx, cfg.bigRows)
			return err
		}},
		{"API", func(ctx context.Context) error {
			var err error
			rep.apis, err = b.api(ctx, []int{16, 64})
			return err
		}},
	}
	for _, s := range steps {
		if only := os.Getenv("BENCH_ONLY"); only != "" && s.name != only {
			continue // BENCH_ONLY=archiver runs one step (its report lacks the others)
		}
		fmt.Fprintf(os.Stderr, "bench: %s...\n", s.name)
		if err := s.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	rep.took, rep.loadEnd = time.Since(rep.started), loadAverage()
	rep.cfg = cfg
	text := rep.markdown(b.versions(ctx))
	fmt.Println(text)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", cfg.out, err)
		}
	}
	return nil
}
