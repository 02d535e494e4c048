package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/lakeaudit"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/lakequery"
)

// lakeStack is a fault stack with a lake and a watcher on it from the start.
type lakeStack struct {
	*stack
	url   string   // LAKE_URL
	env   []string // what else the archivers' environment holds (credentials)
	store lakeaudit.Store
	watch *lakeaudit.Watcher
	where string // "file" or "S3", for the report
}

func newLakeStack(t *testing.T) *lakeStack { return lakeOn(t, newStack(t)) }

// lakeOn adds a file:// lake to a stack made elsewhere (inBothModes).
func lakeOn(t *testing.T, st *stack) *lakeStack {
	root := t.TempDir()
	return watched(t, &lakeStack{stack: st, url: "file://" + root, store: lakeaudit.Dir(root), where: "file"})
}

// s3LakeOn adds a lake under prefix in bucket, on an S3 server reached at
// endpoint (the server's own address, or a proxy's), read back by the
// audit from the server itself.
func s3LakeOn(t *testing.T, st *stack, server string, b testenv.Bucket, endpoint, prefix string) *lakeStack {
	url := testenv.Bucket{Endpoint: endpoint, Name: b.Name}.URL(prefix)
	store := lakeaudit.S3{Endpoint: server, AccessKey: testenv.S3AccessKey, SecretKey: testenv.S3SecretKey, Bucket: b.Name, Prefix: prefix}
	return watched(t, &lakeStack{stack: st, url: url, env: testenv.S3Env(), store: store, where: "S3"})
}

func watched(t *testing.T, s *lakeStack) *lakeStack {
	s.watch = lakeaudit.Watch(t, s.store, s.topic)
	return s
}

// archiver starts an archiver process on the stack's lake; its health and
// metrics listen on port. Files roll every second or 500 events, and a
// vanished member leaves the group after 6 s, or 10 s during a rebalance.
func (s *lakeStack) archiver(port int, extraEnv ...string) *e2e.Process {
	s.t.Helper()
	env := append([]string{
		"KAFKA_BOOTSTRAP_SERVERS=" + s.broker.Addr(), "KAFKA_TOPIC=" + s.topic, "LAKE_URL=" + s.url,
		"ROLL_AGE=1s", "ROLL_EVENTS=500", "SPOOL_DIR=" + s.t.TempDir(), "KAFKA_PROPERTY_SESSION_TIMEOUT_MS=6000", "KAFKA_PROPERTY_MAX_POLL_INTERVAL_MS=10000",
		fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", port),
	}, s.env...)
	return e2e.Start(s.t, "archiver", testenv.Bin(s.t, "archiver"), append(env, extraEnv...), "run")
}

// on names the store in a scenario's name: "" for a folder.
func (s *lakeStack) on() string {
	if s.where == "file" {
		return ""
	}
	return ", lake on " + s.where
}

// finishLake waits for the load and for the topic to hold every row (the
// topic audit), then for the lake to reach the topic's end, and compares the
// lake, read with DuckDB, with the users table: every row once (0 missing),
// every offset in exactly one file, no file changed after it appeared, no
// partial file visible to a *.parquet reader.
func (s *lakeStack) finishLake(name string, load *e2e.Load, note string) {
	s.t.Helper()
	load.Wait()
	if n := load.Other.Load(); n != 0 {
		s.t.Errorf("%d API answers other than 201 and 503", n)
	}
	if topic := e2e.Audit(s.t, s.broker.Addr(), s.topic, s.pool, 5*time.Minute); !topic.Clean() || topic.Missing > 0 || topic.Orphans > 0 {
		s.t.Fatalf("%s: the topic itself is incomplete (%s): the lake cannot be judged", name, topic)
	}
	visible := lakeaudit.WaitCovered(s.t, s.store, s.broker.Addr(), s.topic, 3*time.Minute)
	files := lakeaudit.Files(s.t, s.store, s.topic)
	if gaps := lakeaudit.Gaps(files, visible); len(gaps) > 0 {
		s.t.Errorf("%s: offsets not in exactly one file: %v", name, gaps)
	}
	rep := s.lakeReport()
	// What a user's count(*) says: each user once, in both delivery modes.
	if n := lakeaudit.Count(s.t, s.store, s.topic, "SELECT count(*) FROM "+lakequery.View(s.topic)); n != int64(rep.Inserted-rep.Missing) {
		s.t.Errorf("%s: SELECT count(*) FROM %s says %d; the lake holds %d distinct users", name, lakequery.View(s.topic), n, rep.Inserted-rep.Missing)
	}
	s.watch.Stop()
	seen, changed, partial := s.watch.Report()
	if len(changed) > 0 || len(partial) > 0 {
		s.t.Errorf("%s: files changed after they appeared %v; partial files visible to readers %v", name, changed, partial)
	}
	note = fmt.Sprintf("lake (%s) read with DuckDB: %d files, %d seen changing, %d partial seen; %s", s.where, seen, len(changed), len(partial), note)
	results.Lock()
	results.rows = append(results.rows, result{Scenario: name, Delivery: s.mode(), Postgres: pgMajor(), Report: rep, Note: note})
	results.Unlock()
	s.t.Logf("%s: %s; %s", name, rep, note)
	if !rep.Clean() {
		s.t.Errorf("%s: %s", name, rep)
	}
	if s.mode() == "exactly-once" && rep.Duplicates != 0 {
		s.t.Errorf("%s, exactly-once upstream: %d duplicates in the lake, want 0", name, rep.Duplicates)
	}
	if rep.Inserted == 0 {
		s.t.Errorf("%s: nothing was inserted, the scenario proves nothing", name)
	}
}

// lakeReport compares the lake's rows with the users table, in the fault
// report's terms: Records are lake rows, Duplicates rows beyond the first of
// their user, Invalid rows whose user or username the table does not have.
func (s *lakeStack) lakeReport() e2e.Report {
	s.t.Helper()
	users := map[string]string{}
	rs, err := s.pool.Query(context.Background(), "SELECT id, username FROM users")
	if err != nil {
		s.t.Fatal(err)
	}
	for rs.Next() {
		var id int64
		var name string
		if err := rs.Scan(&id, &name); err != nil {
			s.t.Fatal(err)
		}
		users[strconv.FormatInt(id, 10)] = name
	}
	rs.Close()
	rep := e2e.Report{Inserted: len(users)}
	firstCEID := map[string]string{}
	rows := lakeaudit.Rows(s.t, s.store, s.topic)
	if bad := lakeaudit.Misplaced(rows); len(bad) > 0 {
		s.t.Errorf("rows in files whose names do not claim them: %v", bad)
	}
	for _, r := range rows {
		rep.Records++
		if name, ok := users[r.Key]; !ok || name != r.Username {
			rep.Invalid++
			continue
		}
		if first, seen := firstCEID[r.Key]; seen {
			rep.Duplicates++
			if first != r.CEID {
				rep.CEIDMismatches++
			}
			continue
		}
		firstCEID[r.Key] = r.CEID
	}
	for id := range users {
		if _, ok := firstCEID[id]; !ok {
			rep.Missing++
		}
	}
	return rep
}

// In both delivery modes of the streamer: with exactly-once upstream the lake
// must hold no duplicate at all.
func TestArchiverSIGKILLedUnderLoadLosesNothingAndNoFileChanges(t *testing.T) {
	inBothModes(t, archiverKills)
}

func archiverKills(t *testing.T, st *stack) { kills(t, lakeOn(t, st)) }

// kills SIGKILLs the archiver again and again under load, each time at a
// random moment of a roll interval, and restarts it.
func kills(t *testing.T, s *lakeStack) {
	sc := size()
	s.streamer(0)
	a := s.archiver(0)
	// The load runs until every kill is done, so each one lands under load.
	load := e2e.StartLoad(s.api, "lakekill", sc.rate/2, sc.rows*100)
	var worst time.Duration
	for k := 0; k < sc.kills; k++ {
		// Kill once the archiver writes files again, at a random moment of
		// its next roll interval: mid-fill, mid-put or between put and commit.
		started := time.Now()
		e2e.WaitFor(t, time.Minute, "the restarted archiver to write a file", func() bool {
			return strings.Contains(a.Output(), "file written")
		})
		worst = max(worst, time.Since(started))
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		a.Kill()
		a = s.archiver(0)
	}
	time.Sleep(2 * time.Second)
	load.Stop()
	s.finishLake(fmt.Sprintf("archiver SIGKILL ×%d under load%s", sc.kills, s.on()), load,
		fmt.Sprintf("each restart resumed from the lake's files; the slowest wrote its first file %s after its start", worst.Round(100*time.Millisecond)))
}

func TestArchiverRidesOutABrokerRestart(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newLakeStack(t)
	s.streamer(0)
	a := s.archiver(0)
	load := e2e.StartLoad(s.api, "lakebroker", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
	s.broker.Stop()
	time.Sleep(sc.outage)
	s.broker.Start()
	load.Wait()
	if exited, err := a.Exited(0); exited {
		t.Fatalf("the archiver exited during the broker restart: %v", err)
	}
	commitErrs := strings.Count(a.Output(), "offset commit failed")
	s.finishLake(fmt.Sprintf("broker stopped %s under the archiver", sc.outage), load,
		fmt.Sprintf("archiver kept running; %d offset commits failed while the broker was away", commitErrs))
}

func TestASecondArchiverJoiningAndLeavingLosesNothing(t *testing.T) {
	t.Parallel()
	s := newLakeStack(t)
	load, note, _ := joinAndLeave(t, s, "lakejoin")
	s.finishLake("second archiver joins, then leaves (SIGTERM)", load, note)
}

// joinAndLeave runs the load under one archiver, starts a second in its
// group a third of the way in, stops it with SIGTERM two thirds in, and waits
// for the first to own every partition again; it says how they split and
// returns both archivers.
func joinAndLeave(t *testing.T, s *lakeStack, name string) (*e2e.Load, string, [2]*e2e.Process) {
	sc := size()
	s.streamer(0)
	portA, portB := e2e.FreePort(t), e2e.FreePort(t)
	a := s.archiver(portA)
	load := e2e.StartLoad(s.api, name, sc.rate, sc.rows)
	third := time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate)
	time.Sleep(third)
	b := s.archiver(portB)
	e2e.WaitFor(t, time.Minute, "both archivers to own partitions", func() bool {
		return partitions(portA) > 0 && partitions(portB) > 0
	})
	split := fmt.Sprintf("%d+%d", partitions(portA), partitions(portB))
	time.Sleep(third)
	if err := b.Stop(t, time.Minute); err != nil {
		t.Fatalf("second archiver's SIGTERM: %v", err)
	}
	wroteB := strings.Count(b.Output(), "file written")
	if wroteB == 0 {
		t.Errorf("the second archiver wrote no file: the scenario proves no split")
	}
	e2e.WaitFor(t, time.Minute, "the first archiver to own every partition again", func() bool { return partitions(portA) == 6 })
	return load, fmt.Sprintf("partitions split %s while both ran; the second wrote %d files", split, wroteB), [2]*e2e.Process{a, b}
}

// partitions asks an archiver's /readyz how many partitions it owns.
func partitions(port int) int {
	var body struct{ Partitions int }
	if !getJSON(fmt.Sprintf("http://127.0.0.1:%d/readyz", port), &body) {
		return -1
	}
	return body.Partitions
}

func getJSON(url string, v any) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v) == nil
}
