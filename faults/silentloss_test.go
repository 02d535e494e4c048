package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

// The operational events every CDC user meets sooner or later: each ends
// with 0 rows missing, or with a loud stop naming the recovery, after which,
// once the recovery is followed, 0 rows are missing.

// command runs a streamer subcommand (backfill, drop-slot) to its end.
func (s *stack) command(args ...string) string {
	s.t.Helper()
	p := e2e.Start(s.t, "streamer "+args[0], testenv.Bin(s.t, "streamer"), []string{
		"DATABASE_URL=" + s.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + s.broker.Addr(), "KAFKA_TOPIC=" + s.topic,
		"REPLICATION_SLOT=" + s.slot, "MIGRATE=false", "DELIVERY=" + s.mode(),
	}, args...)
	exited, err := p.Exited(5 * time.Minute)
	if !exited || err != nil {
		s.t.Fatalf("streamer %s: exited=%v err=%v\n%s", strings.Join(args, " "), exited, err, p.Output())
	}
	return p.Output()
}

// loudStop waits for p to stop by itself with a failing exit whose output
// says every one of wants, and returns how long that took.
func (s *stack) loudStop(p *e2e.Process, from time.Time, wants ...string) time.Duration {
	s.t.Helper()
	exited, err := p.Exited(time.Minute)
	took := time.Since(from)
	if !exited || err == nil {
		s.t.Fatalf("streamer: exited=%v err=%v, want a loud stop\n%s", exited, err, p.Output())
	}
	for _, want := range wants {
		if !strings.Contains(p.Output(), want) {
			s.t.Errorf("the stop does not say %q:\n%s", want, p.Output())
		}
	}
	return took
}

// exec runs SQL as the table's owner.
func (s *stack) exec(sql string, args ...any) {
	s.t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql, args...); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

// recoverWithBackfill follows the documented recoveries. After a lost slot
// (createSlot): a streamer started once with CREATE_SLOT=true, then
// backfill --missing. After a publication or table stop: backfill --missing
// first (it also records the publication as it now is), then the streamer.
// It returns the backfill's report line.
func (s *stack) recoverWithBackfill(createSlot bool) (*e2e.Process, string) {
	s.t.Helper()
	active := func(p *e2e.Process) {
		e2e.WaitFor(s.t, time.Minute, "the recovering streamer to hold the slot", func() bool {
			var active bool
			err := s.pool.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&active)
			return err == nil && active
		})
	}
	var p *e2e.Process
	if createSlot {
		p = s.streamer(0, "CREATE_SLOT=true")
		active(p)
	}
	out := s.command("backfill", "--missing")
	line := out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:]
	if !createSlot {
		p = s.streamer(0)
		active(p)
	}
	return p, strings.TrimSpace(line)
}

func TestADroppedSlotStopsLoudlyAndTheRecoveryMissesNoRowEvenOutOfIDOrder(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	p := s.streamer(0)
	ctx := context.Background()

	// A transaction that takes its id early and commits late: after the slot
	// is gone, below ids that are already in Kafka.
	late, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := late.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('late-committer', 'NL', now(), 'test')`); err != nil {
		t.Fatal(err)
	}
	load := e2e.StartLoad(s.api, "dropped", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	s.exec("SELECT pg_drop_replication_slot($1)", s.slot)
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(sc.rows/6) * time.Second / time.Duration(sc.rate))

	started := time.Now()
	again := s.streamer(0)
	stop := s.loudStop(again, started, "does not exist", "NOT streamed", "CREATE_SLOT=true", "backfill --missing")
	load.Wait()
	_, backfill := s.recoverWithBackfill(true)
	s.finish("slot dropped while stopped, a late commit below streamed ids", load, 0,
		fmt.Sprintf("refused to recreate the slot in %s; after CREATE_SLOT=true once and `backfill --missing`: %s", stop.Round(10*time.Millisecond), summary(backfill)))
}

func TestATableSwappedByAnOnlineSchemaChangeStopsLoudlyAndIsRecovered(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	p := s.streamer(0)
	load := e2e.StartLoad(s.api, "swapped", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))

	// What pg-osc and similar tools do: copy into a new table, then swap
	// the names in one transaction. The new table is in no publication.
	swapped := time.Now()
	s.exec(`BEGIN;
		LOCK TABLE users IN ACCESS EXCLUSIVE MODE;
		CREATE TABLE users_new (LIKE users INCLUDING ALL);
		INSERT INTO users_new SELECT * FROM users;
		ALTER TABLE users RENAME TO users_old;
		ALTER TABLE users_new RENAME TO users;
		ALTER SEQUENCE users_id_seq OWNED BY users.id;
		COMMIT`)
	stop := s.loudStop(p, swapped, "public.users", "NOT streamed", "backfill --missing")
	load.Wait()

	// The recovery the message names: publish the new table, restart, backfill.
	s.exec("ALTER PUBLICATION users_pub SET TABLE users (id, username, country_code, created_at)")
	_, backfill := s.recoverWithBackfill(false)
	s.finish("table swapped for a copy (online schema change)", load, 0,
		fmt.Sprintf("stopped %s after the swap; after publishing the new table and `backfill --missing`: %s", stop.Round(10*time.Millisecond), summary(backfill)))
}

func TestARowFilterAddedToThePublicationStopsLoudlyAndIsRecovered(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	p := s.streamer(0)
	load := e2e.StartLoad(s.api, "filtered", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
	altered := time.Now()
	s.exec(`ALTER PUBLICATION users_pub SET TABLE users (id, username, country_code, created_at) WHERE (username NOT LIKE '%5')`)
	stop := s.loudStop(p, altered, "row filter", "ALTER PUBLICATION", "backfill --missing")
	load.Wait()

	s.exec(fixSQL(t, p.Output()))
	_, backfill := s.recoverWithBackfill(false)
	s.finish("row filter added to the publication mid-stream", load, 0,
		fmt.Sprintf("stopped %s after the ALTER; after running the SQL the stop printed and `backfill --missing`: %s", stop.Round(10*time.Millisecond), summary(backfill)))
}

func TestAStandbyStartedWithAStartLSNTakesOverFromTheSlot(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	portA, portB := e2e.FreePort(t), e2e.FreePort(t)
	a := s.streamer(portA)
	e2e.WaitFor(t, 30*time.Second, "streamer A active", func() bool { return role(portA) == "active" })
	var lsn string
	if err := s.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	b := s.streamer(portB, "START_LSN="+lsn)
	e2e.WaitFor(t, 30*time.Second, "streamer B on standby", func() bool { return role(portB) == "standby" })

	load := e2e.StartLoad(s.api, "startlsn", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/2) * time.Second / time.Duration(sc.rate))
	killed := time.Now()
	a.Kill()
	recovery := s.recovery(killed)
	e2e.WaitFor(t, 30*time.Second, "streamer B active", func() bool { return role(portB) == "active" })
	if exited, err := b.Exited(0); exited {
		t.Fatalf("the standby given START_LSN exited on takeover: %v", err)
	}
	s.finish("standby started with START_LSN takes over", load, recovery, "START_LSN ignored by the standby; it resumed from the slot")
}

func TestPoisonRowsGoToTheDeadLetterTopicAndTheStreamGoesOn(t *testing.T) {
	t.Parallel()
	sc := size()
	s := newStack(t)
	// A database default that would make every text timestamp undecodable.
	s.exec("ALTER DATABASE userstream SET DateStyle = 'SQL, DMY'")
	p := s.streamer(0)
	load := e2e.StartLoad(s.api, "poison", sc.rate, sc.rows)
	time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
	poison := map[string]string{
		"infinity":        `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-inf', 'BE', 'infinity', 'test') RETURNING id`,
		"year 10000":      `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-y10k', 'BE', '10000-01-01 00:00:00', 'test') RETURNING id`,
		"before Christ":   `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-bc', 'BE', '0044-03-15 00:00:00 BC', 'test') RETURNING id`,
		"lower-case code": `INSERT INTO users (username, country_code, created_at, api_version) VALUES ('poison-lower', 'be', now(), 'test') RETURNING id`,
	}
	ids := map[string]string{}
	for what, sql := range poison {
		var id int64
		if err := s.pool.QueryRow(context.Background(), sql).Scan(&id); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		ids[fmt.Sprint(id)] = what
	}
	load.Wait()
	dead := testenv.Consume(t, s.broker.Addr(), s.topic+".dlq", len(ids), time.Minute, 2*time.Second)
	if len(dead) != len(ids) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(ids))
	}
	for _, r := range dead {
		if _, ok := ids[r.Key]; !ok {
			t.Errorf("dead letter with key %q is not a poison row", r.Key)
		}
		for _, want := range []string{`"error":`, `"lsn":`, `"columns":`} {
			if !strings.Contains(string(r.Value), want) {
				t.Errorf("dead letter %s lacks %s: %s", r.Key, want, r.Value)
			}
		}
	}
	if exited, err := p.Exited(0); exited {
		t.Fatalf("streamer stopped on a poison row: %v", err)
	}
	for _, leak := range []string{"poison-", "10000-01-01", "infinity"} {
		if strings.Contains(p.Output(), leak) {
			t.Errorf("a poison row's value %q reached the log", leak)
		}
	}
	// The poison rows are accounted for on the dead-letter topic; the audit
	// holds every other row against the events.
	for id := range ids {
		s.exec("DELETE FROM users WHERE id = $1", id)
	}
	s.finish("poison rows under a non-ISO DateStyle", load, 0,
		fmt.Sprintf("%d poison rows (infinity, year 10000, BC, lower-case country) on the dead-letter topic, streamer kept running, no value in the log", len(ids)))
}

// fixSQL takes the SQL a publication stop prints, from the error line the
// program ends with.
func fixSQL(t *testing.T, out string) string {
	t.Helper()
	const from, to = "Fix it as the table's owner: ", ";. Rows"
	line := out[strings.LastIndex(out, "streamer: "):]
	i, j := strings.Index(line, from), strings.Index(line, to)
	if i < 0 || j < i {
		t.Fatalf("no fixing SQL in the stop: %s", line)
	}
	return line[i+len(from) : j+1]
}

// summary keeps a backfill's counts from its final log line.
func summary(line string) string {
	var f struct {
		Events  int `json:"events"`
		Already int `json:"already_in_topic"`
	}
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		return "backfill line unreadable"
	}
	return fmt.Sprintf("%d users sent, %d already in the topic skipped", f.Events, f.Already)
}
