// Package faults is the fault suite: each scenario drives a steady insert load
// through the real API, injects one fault into the real PostgreSQL, broker or
// streamer processes, then reads the whole topic with a plain consumer and
// compares it with the users table. `make test` runs every scenario at a
// small size; `make faults` runs them at full size and writes
// docs/reliability.md.
package faults

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/machine"
	"github.com/userstream/userstream/internal/testenv"
)

var (
	full       = flag.Bool("faults.full", false, "run the full-size scenarios (make faults)")
	reportPath = flag.String("faults.report", "", "write the results table to this Markdown file")
	rowsPath   = flag.String("faults.rows", "", "add this run's results to this JSON file, and report every result in it: runs on several PostgreSQL majors make one report")
)

// scale is how big each scenario is.
type scale struct {
	rows   int           // inserts through the API
	rate   int           // per second
	kills  int           // SIGKILLs in the repeated-kill scenario
	outage time.Duration // broker stopped this long
	huge   int           // rows in the one big transaction
}

func size() scale {
	if *full {
		return scale{rows: 20_000, rate: 1000, kills: 10, outage: 30 * time.Second, huge: 1_000_000}
	}
	return scale{rows: 3000, rate: 600, kills: 3, outage: 3 * time.Second, huge: 100_000}
}

// result is one row of the report.
type result struct {
	Scenario string
	Delivery string
	Postgres string // the major version
	e2e.Report
	Recovery time.Duration
	Note     string
}

var results struct {
	sync.Mutex
	rows []result
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if err := report(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: write report:", err)
		code = 1
	}
	os.Exit(code)
}

// stack is one scenario's private world.
type stack struct {
	t       *testing.T
	cluster *testenv.Cluster
	dsn     string
	pool    *pgxpool.Pool
	broker  *e2e.Broker
	topic   string
	slot    string
	api     string
	// delivery is the streamers' DELIVERY; exactly-once scenarios must end
	// with no duplicate for a read_committed consumer.
	delivery string
	// rolledBack is how many users a restore took back after they reached
	// Kafka: the audit must find exactly that many events without a row.
	rolledBack int
	// repeats, when set, says why an exactly-once scenario may repeat
	// events (a restore replays what the restored slot had not confirmed).
	repeats string
}

// inBothModes runs a scenario once per delivery mode, each on its own stack.
func inBothModes(t *testing.T, scenario func(t *testing.T, s *stack)) {
	for _, mode := range []string{"at-least-once", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.delivery = mode
			scenario(t, s)
		})
	}
}

func newStack(t *testing.T, conf ...string) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{t: t, cluster: testenv.NewCluster(t, conf...), topic: "users.created", slot: "users_cdc"}
	admin, err := pgx.Connect(ctx, s.cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE userstream"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	s.dsn = testenv.WithDatabase(t, s.cluster.DSN(), "userstream")
	e2e.PrepareDatabase(t, s.dsn, s.slot)
	cfg, err := pgxpool.ParseConfig(s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.pool.Close)
	s.broker = e2e.StartBroker(t)
	s.api = e2e.StartAPI(t, s.pool)
	return s
}

// streamer starts a streamer process; its health and metrics listen on port.
func (s *stack) streamer(port int, extraEnv ...string) *e2e.Process {
	s.t.Helper()
	return e2e.Start(s.t, "streamer", testenv.Bin(s.t, "streamer"), append([]string{
		"DATABASE_URL=" + s.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + s.broker.Addr(), "KAFKA_TOPIC=" + s.topic,
		"REPLICATION_SLOT=" + s.slot, fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", port), "MIGRATE=false",
		"DELIVERY=" + s.mode(),
	}, extraEnv...), "run")
}

func (s *stack) mode() string {
	if s.delivery == "" {
		return "at-least-once"
	}
	return s.delivery
}

func (s *stack) size() int64 { return e2e.TopicSize(s.t, s.broker.Addr(), s.topic) }

// recovery waits until the stream has caught up with the fault's removal:
// the topic grows past what it held then, or the slot confirms the WAL
// position of that moment (everything committed before it is in Kafka, even
// when no new row arrives after it). It returns how long that took from from.
func (s *stack) recovery(from time.Time) time.Duration {
	s.t.Helper()
	base := s.size()
	var mark string
	if err := s.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&mark); err != nil {
		s.t.Fatal(err)
	}
	e2e.WaitFor(s.t, 3*time.Minute, "events to flow again", func() bool {
		if s.size() > base {
			return true
		}
		var caughtUp bool
		err := s.pool.QueryRow(context.Background(),
			"SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $2", mark, s.slot).Scan(&caughtUp)
		return err == nil && caughtUp
	})
	return time.Since(from)
}

// role asks a streamer's /readyz for its role.
func role(port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body struct{ Role string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Role
}

// finish waits for the load, audits the topic, records the result and fails
// the test if anything was lost, leaked or broken.
func (s *stack) finish(name string, load *e2e.Load, recovery time.Duration, note string) {
	s.t.Helper()
	if load != nil {
		load.Wait()
		if n := load.Other.Load(); n != 0 {
			s.t.Errorf("%d API answers other than 201 and 503", n)
		}
	}
	rep := e2e.Audit(s.t, s.broker.Addr(), s.topic, s.pool, 5*time.Minute)
	results.Lock()
	results.rows = append(results.rows, result{Scenario: name, Delivery: s.mode(), Postgres: pgMajor(), Report: rep, Recovery: recovery, Note: note})
	results.Unlock()
	s.t.Logf("%s: %s; recovery %s; %s", name, rep, recovery.Round(time.Millisecond), note)
	if !rep.Clean() {
		s.t.Errorf("%s: %s", name, rep)
	}
	if rep.Orphans != s.rolledBack {
		s.t.Errorf("%s: %d events of users the table does not hold, want %d", name, rep.Orphans, s.rolledBack)
	}
	if s.mode() == "exactly-once" && rep.Duplicates != 0 && s.repeats == "" {
		s.t.Errorf("%s, exactly-once: %d duplicates for a read_committed consumer, want 0", name, rep.Duplicates)
	}
	if rep.Inserted == 0 {
		s.t.Errorf("%s: nothing was inserted, the scenario proves nothing", name)
	}
}

func report() error {
	results.Lock()
	defer results.Unlock()
	rows := results.rows
	if *rowsPath != "" {
		var earlier []result
		if b, err := os.ReadFile(*rowsPath); err == nil {
			if err := json.Unmarshal(b, &earlier); err != nil {
				return fmt.Errorf("read %s: %w", *rowsPath, err)
			}
		}
		rows = append(earlier, rows...)
		b, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*rowsPath, b, 0o644); err != nil {
			return err
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Scenario != b.Scenario {
			return a.Scenario < b.Scenario
		}
		if a.Postgres != b.Postgres {
			return a.Postgres < b.Postgres
		}
		return a.Delivery < b.Delivery
	})
	var b strings.Builder
	fmt.Fprintln(&b, "| scenario | PostgreSQL | delivery | rows inserted | events found | rows missing | duplicates (same ce_id) | leaked fields | invalid | time to recover | notes |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		rec := "–"
		if r.Recovery > 0 {
			rec = r.Recovery.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d (%d mismatched) | %d | %d | %s | %s |\n",
			r.Scenario, r.Postgres, r.Delivery, r.Inserted, r.Records, r.Missing, r.Duplicates, r.CEIDMismatches, r.Leaked, r.Invalid, rec, r.Note)
	}
	fmt.Print("\nFault suite results:\n\n" + b.String())
	if *reportPath == "" {
		return nil
	}
	return os.WriteFile(*reportPath, []byte(reliabilityDoc(b.String())), 0o644)
}

// pgMajor is the major version of the PostgreSQL the scenarios run.
var pgMajor = sync.OnceValue(func() string {
	f := strings.Fields(pgVersion()) // postgres (PostgreSQL) 17.10
	if len(f) < 3 {
		return "?"
	}
	return strings.SplitN(f[2], ".", 2)[0]
})

func reliabilityDoc(table string) string {
	return fmt.Sprintf(`# Reliability: the fault suite

Produced by `+"`make faults`"+` on %s.

Machine: %s. PostgreSQL: the major each row ran on is in its column (every
scenario on the default major, the restores and failovers on the newest
too; the last run's server was %s). Broker: devkafka (franz-go kfake),
a Kafka-protocol stand-in. Streamer: idempotent producer, `+"`acks=all`"+`.

Each scenario runs on a private PostgreSQL cluster and broker, drives a steady
insert load through the real API (a scenario without load says so), injects
one fault into the real processes, then reads the whole topic with a plain
consumer and compares it with the users table. *Time to recover* runs from
the moment the fault is removed (or, for a takeover, from the kill) until
events flow again, or until the slot confirms everything committed before
that moment, whichever comes first. The crash scenarios run in both delivery
modes. In at-least-once mode duplicates are allowed; each must carry its
original's `+"`ce_id`"+`. In exactly-once mode the audit reads with
`+"`isolation.level=read_committed`"+` and duplicates must be 0. Missing rows, leaked
fields and invalid events must be 0 everywhere. Scenarios that end in a loud
stop (a dropped or lost slot, a swapped table, a row filter) follow the
recovery the stop printed, and the audit runs after it. The archiver's
scenarios also read the lake with DuckDB, listed and fetched by a client of
their own (the os package for a folder, minio-go for the S3 server, SeaweedFS,
that the scenario starts), and check it the same way against the users table,
with every visible record held by exactly one file, each row in the file its
name claims, no file changed after it appeared, no partial file visible, and
`+"`count(*)`"+` of the deduplicated view equal to the users the lake holds.

%s
## Reading the figures

- **Duplicates after a PostgreSQL restart.** PostgreSQL before 17 writes a
  logical slot's confirmed position to disk only when the slot is otherwise
  dirty (its restart position or xmin moved, about every 15 s under load), not
  at every shutdown. After a restart it replays from the last position it
  wrote, so up to some seconds of events come again. Every copy has its
  original's `+"`"+`ce_id`+"`"+`; nothing is lost. PostgreSQL 17 persists the position at
  shutdown.
- **Duplicates after a streamer SIGKILL (at-least-once)** are the events
  delivered after the last position reported to PostgreSQL: up to about two
  seconds' worth, since the position waits both for the status update (every
  second) and for the publication check that vouches for it (every second).
  Exactly-once mode skips them on resume: its position is the progress record
  committed with each Kafka transaction.
- **Archiver rows** audit the lake, read with DuckDB, against the table; their
  delivery column is the streamer's mode upstream of the archiver.
- **Broker SIGKILL.** This kfake version keeps enough idempotent-producer
  state on disk, and accepts a restarted producer's sequences as Kafka 2.5+
  does (KIP-360), so the SIGKILL caused no fatal producer error here ("0
  session restarts"). The fatal path itself is proven by
  `+"`"+`TestAFatalProducerErrorRecreatesTheProducerAndLosesNothing`+"`"+`, which makes
  librdkafka raise the fatal out-of-order-sequence error on a real producer:
  the streamer drops it, resumes from the last acknowledged position with a
  new one, and loses nothing.
- **Restores.** Users committed after the restore point that had reached
  Kafka stay there: the audit counts them as events without a row and
  requires exactly as many as the restore took back. The restored slot
  replays what it had not confirmed when the copy was taken: duplicates in
  both modes (same `+"`"+`ce_id`+"`"+`). Exactly-once finds that its last progress
  record names a transaction the restored history does not hold, and skips
  nothing on it, so no new user is lost.
- **Failovers.** With a failover slot (PostgreSQL 17+) synced to the standby
  and `+"`"+`synchronized_standby_slots`+"`"+` on the primary, the streamer goes on from
  the promoted standby by itself; exactly-once proves its last progress
  record in the new primary's stream, so a read_committed consumer sees no
  duplicate. Without slot sync (or before 17) the slot is missing on the new
  primary, and the row follows the printed recovery.
- **Time to recover** for the broker outage is librdkafka's reconnect, capped
  at 1 s (`+"`"+`reconnect.backoff.max.ms`+"`"+`); for a takeover it includes the
  standby's one-second retry.

`+"`make test`"+` runs the same scenarios at a small size on every run.
`, time.Now().UTC().Format("2006-01-02"), machine.Describe(), pgVersion(), table)
}

func pgVersion() string {
	cmd := exec.Command("bash", "-c", ". scripts/lib.sh; \"$(pg_bin)/postgres\" --version")
	cmd.Dir = ".." // tests run in the package folder
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
