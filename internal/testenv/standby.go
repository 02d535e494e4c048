package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Major is the cluster's PostgreSQL major version.
func (c *Cluster) Major(t testing.TB) int {
	t.Helper()
	var num int
	c.query(t, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num)
	})
	return num / 10000
}

// Port is the port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// Kill stops the cluster at once, as a crash would (immediate shutdown).
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	if err := runScript("pg_kill " + shellQuote(c.dir)); err != nil {
		t.Fatalf("testenv: kill cluster: %v", err)
	}
}

// Promote makes a standby the primary and waits until it takes writes.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	if err := runScript("pg_promote " + shellQuote(c.dir)); err != nil {
		t.Fatalf("testenv: promote: %v", err)
	}
}

// NewStandby starts a streaming physical standby of c, made from a copy of
// its stopped data directory (c is restarted once), through a physical slot
// of its own. With sync, on PostgreSQL 17+, it keeps copies of c's failover
// slots in database dbname (sync_replication_slots, hot_standby_feedback,
// dbname in primary_conninfo), and c's logical walsenders wait for it
// (synchronized_standby_slots). It is stopped and removed when the test
// ends.
func (c *Cluster) NewStandby(t testing.TB, dbname string, sync bool) *Cluster {
	t.Helper()
	base, err := os.MkdirTemp("", "userstream-standby-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &Cluster{dir: filepath.Join(base, "data")}
	t.Cleanup(func() {
		s.stop()
		os.RemoveAll(base)
	})
	s.follow(t, c, dbname, sync)
	return s
}

// Rejoin makes c, stopped, a standby of primary again: the data directory
// is copied anew from primary (as pg_rewind or a fresh clone would leave
// it), and c keeps its port.
func (c *Cluster) Rejoin(t testing.TB, primary *Cluster, dbname string, sync bool) {
	t.Helper()
	if err := os.RemoveAll(c.dir); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c.follow(t, primary, dbname, sync)
}

func (c *Cluster) follow(t testing.TB, primary *Cluster, dbname string, sync bool) {
	t.Helper()
	sync = sync && primary.Major(t) >= 17
	slot := fmt.Sprintf("standby_%d", time.Now().UnixNano()%1_000_000)
	primary.query(t, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot)
		return err
	})
	primary.Stop(t)
	if sync {
		primary.appendConf(t, fmt.Sprintf("synchronized_standby_slots = '%s'", slot))
	}
	if out, err := exec.Command("cp", "-a", primary.dir, c.dir).CombinedOutput(); err != nil {
		t.Fatalf("testenv: copy the primary: %v: %s", err, out)
	}
	primary.Start(t)
	// As a base backup leaves it: no slots, no pid file.
	for _, p := range []string{"postmaster.pid", "postmaster.opts", "pg_replslot"} {
		if err := os.RemoveAll(filepath.Join(c.dir, p)); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	if err := os.Mkdir(filepath.Join(c.dir, "pg_replslot"), 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	conf := []string{
		fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres password=postgres dbname=%s application_name=standby'", primary.port, dbname),
		fmt.Sprintf("primary_slot_name = '%s'", slot),
		"hot_standby = on",
		"hot_standby_feedback = on",
	}
	if primary.Major(t) >= 17 {
		// A promoted standby waits for no standby of its own.
		conf = append(conf, "synchronized_standby_slots = ''", fmt.Sprintf("sync_replication_slots = %v", sync))
	}
	c.appendConf(t, conf...)
	if err := os.WriteFile(filepath.Join(c.dir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := runScript("chown -R postgres: " + shellQuote(c.dir) + " 2>/dev/null || true"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c.Start(t)
	deadline := time.Now().Add(time.Minute)
	for {
		var streaming bool
		primary.query(t, func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_replication WHERE state = 'streaming' AND application_name = 'standby'").Scan(&streaming)
		})
		if streaming {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: the standby did not stream within a minute; its log:\n%s", c.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) appendConf(t testing.TB, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(c.dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func (c *Cluster) log() string {
	b, _ := os.ReadFile(c.dir + ".log")
	return string(b)
}

// query runs f on a fresh connection to the cluster's postgres database.
func (c *Cluster) query(t testing.TB, f func(ctx context.Context, conn *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatalf("testenv: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if err := f(ctx, conn); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
