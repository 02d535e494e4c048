// Package testenv hands tests the real PostgreSQL and Kafka-protocol broker
// that `make test` starts: each test gets its own database, slot names and
// topics, so tests stay independent and may run in parallel. Tests that must
// stop or restart a server get a private one (NewCluster, NewBroker).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	envDatabaseURL = "USERSTREAM_TEST_DATABASE_URL"
	envKafka       = "USERSTREAM_TEST_KAFKA"
	envBin         = "USERSTREAM_TEST_BIN"
)

// Postgres creates a fresh database in the shared test cluster and returns a
// superuser DSN for it. The database, and any replication slot made in it,
// is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := mustEnv(t, envDatabaseURL)
	name := Name(t, "db")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: connect to the test cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, admin, name) })
	return WithDatabase(t, admin, name)
}

// WithDatabase returns dsn pointed at another database.
func WithDatabase(t testing.TB, dsn, database string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("testenv: parse DSN: %v", err)
	}
	u.Path = "/" + database
	return u.String()
}

// Kafka returns the bootstrap address of the shared broker (devkafka, or the
// Kafka named by KAFKA_BOOTSTRAP_SERVERS when make test was given one).
func Kafka(t testing.TB) string { return mustEnv(t, envKafka) }

// Topic returns a topic name no other test uses.
func Topic(t testing.TB) string { return Name(t, "topic") }

// Name returns a unique lowercase identifier, safe as a database, slot or
// topic name, that starts with prefix.
func Name(t testing.TB, prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Bin returns the path of a program built from cmd/<name>. make test builds
// them once; outside it they are built into the test's temporary folder.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv(envBin); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: build %s: %v\n%s", name, err, b)
	}
	return out
}

// RepoRoot is the module's root folder.
func RepoRoot(t testing.TB) string { return repoRoot() }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func mustEnv(t testing.TB, key string) string {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		t.Fatalf("testenv: %s is not set: run the suite with `make test`, which starts PostgreSQL and the broker", key)
	}
	return v
}

// dropDatabase ends every session and replication slot of the database, then
// drops it. Slots block DROP DATABASE, and an active slot cannot be dropped,
// so walsenders are terminated first.
func dropDatabase(t testing.TB, admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("testenv: connect to drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	var lastErr error
	for i := 0; i < 50; i++ {
		_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
		_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		if _, lastErr = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); lastErr == nil {
			return
		}
		if !strings.Contains(lastErr.Error(), "replication slot") && !strings.Contains(lastErr.Error(), "being accessed") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("testenv: drop database %s: %v", name, lastErr)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runScript runs a function of scripts/lib.sh, the same code make up uses.
func runScript(script string) error {
	cmd := exec.Command("bash", "-c", ". scripts/lib.sh; "+script)
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", script, err, b)
	}
	return nil
}
