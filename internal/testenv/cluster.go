package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/devkafka"
)

// Cluster is a private PostgreSQL cluster a test may stop and start, made with
// the same scripts as make up and make test.
type Cluster struct {
	dir  string
	port int
}

// NewCluster initialises and starts a private cluster; conf lines (e.g.
// "max_slot_wal_keep_size = 64MB") are appended to its postgresql.conf. It is
// stopped and removed when the test ends.
func NewCluster(t testing.TB, conf ...string) *Cluster {
	t.Helper()
	base, err := os.MkdirTemp("", "userstream-pg-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// The server runs as postgres when the tests run as root: it must be able
	// to reach its folder.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c := &Cluster{dir: filepath.Join(base, "data")}
	t.Cleanup(func() {
		c.stop()
		os.RemoveAll(base)
	})
	if err := runScript("PG_FAST=1 pg_init " + shellQuote(c.dir)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if len(conf) > 0 {
		c.appendConf(t, conf...)
	}
	c.Start(t)
	return c
}

// DSN is the superuser DSN of the cluster's postgres database.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("postgres://postgres:postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the cluster, on the port it had before if it ran already.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if c.port == 0 || (attempt > 0 && portInUse(c.port)) {
			c.port = freePort(t)
		}
		err = runScript("pg_start " + shellQuote(c.dir) + " " + strconv.Itoa(c.port) + " " + shellQuote(c.dir+".log"))
		if err == nil {
			return
		}
	}
	t.Fatalf("testenv: start private cluster: %v", err)
}

// Stop shuts the cluster down (fast shutdown: sessions are cut, committed
// data stays).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("testenv: stop private cluster: %v", err)
	}
}

// Copy copies the stopped cluster's data directory, as a file-system
// backup or a volume snapshot would, and returns where the copy is.
func (c *Cluster) Copy(t testing.TB) string {
	t.Helper()
	dst := c.dir + fmt.Sprintf(".copy%d", time.Now().UnixNano())
	if out, err := exec.Command("cp", "-a", c.dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("testenv: copy the data directory: %v: %s", err, out)
	}
	return dst
}

// Restore replaces the stopped cluster's data directory with a copy made
// by Copy (the copy is kept, so it can be restored again). Without slots,
// the restore is what a base backup gives: pg_basebackup leaves out
// replication slots.
func (c *Cluster) Restore(t testing.TB, copied string, withSlots bool) {
	t.Helper()
	if err := os.RemoveAll(c.dir); err != nil {
		t.Fatalf("testenv: remove the data directory: %v", err)
	}
	if out, err := exec.Command("cp", "-a", copied, c.dir).CombinedOutput(); err != nil {
		t.Fatalf("testenv: restore the data directory: %v: %s", err, out)
	}
	if withSlots {
		return
	}
	slots, err := os.ReadDir(filepath.Join(c.dir, "pg_replslot"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, s := range slots {
		if err := os.RemoveAll(filepath.Join(c.dir, "pg_replslot", s.Name())); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
}

func (c *Cluster) stop() error {
	return runScript("pg_stop " + shellQuote(c.dir))
}

// Broker is a private in-process Kafka-protocol broker with its data on disk,
// for tests that restart the broker.
type Broker struct {
	*devkafka.Broker
	dir  string
	port int
}

// NewBroker starts a private broker; it is closed when the test ends.
func NewBroker(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{dir: t.TempDir()}
	b.Start(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// Start (re)starts the broker on its previous port, reloading its data.
func (b *Broker) Start(t testing.TB) {
	t.Helper()
	kb, err := devkafka.Start(devkafka.Config{Port: b.port, DataDir: b.dir})
	if err != nil {
		t.Fatalf("testenv: start broker: %v", err)
	}
	b.Broker, b.port = kb, kb.Port()
}

// Restart closes the broker cleanly and starts it again on the same port.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.Close()
	b.Start(t)
}
