package streamer_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
	"github.com/userstream/userstream/streamer"
)

// env is one test's database (migrated, with its slot created), topic and
// broker.
type env struct {
	t     *testing.T
	dsn   string
	kafka string
	topic string
	slot  string
	pool  *pgxpool.Pool
	logs  *e2e.SyncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, dsn: testenv.Postgres(t), kafka: testenv.Kafka(t), topic: testenv.Topic(t), slot: testenv.Name(t, "slot"), logs: &e2e.SyncBuffer{}}
	e2e.PrepareDatabase(t, e.dsn, e.slot)
	var err error
	if e.pool, err = pgxpool.New(ctx, e.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	return e
}

func (e *env) config(start pglogrepl.LSN) streamer.Config {
	return streamer.Config{
		DatabaseURL: e.dsn, Slot: e.slot, StartLSN: start, ShutdownTimeout: 10 * time.Second,
		Kafka: kafkaclient.Config{Topic: e.topic, Partitions: 3, Properties: map[string]string{"bootstrap.servers": e.kafka}},
	}
}

// inProcess runs the streamer in this process; stop cancels it and returns
// Run's error.
func (e *env) inProcess(start pglogrepl.LSN) (stop func() error) {
	stop, _ = e.inProcessWith(e.config(start))
	return stop
}

// inProcessWith runs the streamer with cfg in this process. stop cancels it
// and returns Run's error; finished closes when Run returned, by itself or
// after stop.
func (e *env) inProcessWith(cfg streamer.Config) (stop func() error, finished <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	s := streamer.New(cfg, zerolog.New(e.logs), streamer.NewMetrics(prometheus.NewRegistry()))
	var runErr error
	ended := make(chan struct{})
	go func() {
		runErr = s.Run(ctx)
		close(ended)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case <-ended:
				err = runErr
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("streamer did not stop within 30 s")
			}
		})
		return err
	}
	e.t.Cleanup(func() {
		_ = stop()
		if e.t.Failed() {
			e.t.Logf("streamer logs:\n%s", e.logs.String())
		}
	})
	return stop, ended
}

// child runs the real streamer binary, so a test can SIGKILL it.
func (e *env) child(extraEnv ...string) *e2e.Process {
	e.t.Helper()
	return e2e.Start(e.t, "streamer", testenv.Bin(e.t, "streamer"), append([]string{
		"DATABASE_URL=" + e.dsn, "KAFKA_BOOTSTRAP_SERVERS=" + e.kafka, "KAFKA_TOPIC=" + e.topic,
		"KAFKA_TOPIC_PARTITIONS=3", "REPLICATION_SLOT=" + e.slot, "METRICS_ADDR=127.0.0.1:0", "MIGRATE=false",
	}, extraEnv...), "run")
}

type user struct {
	id                               int64
	username, countryCode, createdAt string
}

// insertUsers inserts n users, one transaction each, named prefix-i.
func (e *env) insertUsers(prefix string, from, n int) {
	e.t.Helper()
	for i := from; i < from+n; i++ {
		_, err := e.pool.Exec(context.Background(),
			`INSERT INTO users (username, country_code, created_at, is_a_dog, api_version) VALUES ($1, 'BE', '2021-01-01 00:00:00', true, 'test')`,
			fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			e.t.Fatalf("insert: %v", err)
		}
	}
}

func (e *env) users() map[string]user {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT id, username, country_code, to_char(created_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM users`)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]user{}
	for rows.Next() {
		var u user
		if err := rows.Scan(&u.id, &u.username, &u.countryCode, &u.createdAt); err != nil {
			e.t.Fatal(err)
		}
		out[strconv.FormatInt(u.id, 10)] = u
	}
	if rows.Err() != nil {
		e.t.Fatal(rows.Err())
	}
	return out
}

// currentLSN is the WAL insert position: past every commit so far, even
// with synchronous_commit off (pg_current_wal_lsn may trail it then).
func (e *env) currentLSN() pglogrepl.LSN {
	e.t.Helper()
	var s string
	if err := e.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

// firstUndelivered inserts one user and returns the WAL insert position
// read inside its transaction, before its commit record.
func (e *env) firstUndelivered(username string) pglogrepl.LSN {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO users (username, country_code, created_at, is_a_dog, api_version) VALUES ($1, 'BE', '2021-01-01 00:00:00', true, 'test')`, username); err != nil {
		e.t.Fatalf("insert: %v", err)
	}
	var s string
	if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

func (e *env) confirmedLSN() pglogrepl.LSN {
	e.t.Helper()
	conn, err := e.pool.Acquire(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Release()
	st, err := replication.Slot(context.Background(), conn.Conn(), e.slot)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Confirmed
}

func (e *env) topicSize() int64 { return e2e.TopicSize(e.t, e.kafka, e.topic) }

// checkContract checks every record against the event contract and the
// table: schema, key = id, value = row, headers, nothing else leaked. It
// returns the records grouped by key.
func checkContract(t *testing.T, records []testenv.Record, rows map[string]user) map[string][]testenv.Record {
	t.Helper()
	validate, err := projection.Validator(projection.UserCreatedType)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]testenv.Record{}
	for _, r := range records {
		byKey[r.Key] = append(byKey[r.Key], r)
		if err := validate(r.Value); err != nil {
			t.Fatalf("record %s = %s is not a valid user.created.v1: %v", r.Key, r.Value, err)
		}
		u, ok := rows[r.Key]
		if !ok {
			t.Fatalf("record with key %q matches no user id", r.Key)
		}
		want := fmt.Sprintf(`{"username":%q,"country_code":%q,"created_at":%q}`, u.username, u.countryCode, u.createdAt)
		if string(r.Value) != want {
			t.Fatalf("record %s = %s, want %s", r.Key, r.Value, want)
		}
		for _, leaked := range []string{"is_a_dog", "api_version", "true", `"test"`} {
			if bytes.Contains(r.Value, []byte(leaked)) {
				t.Fatalf("record %s carries %s: %s", r.Key, leaked, r.Value)
			}
		}
		for k, want := range map[string]string{"ce_specversion": "1.0", "ce_type": "user.created.v1", "content-type": "application/json", "ce_subject": r.Key} {
			if r.Headers[k] != want {
				t.Fatalf("record %s header %s = %q, want %q", r.Key, k, r.Headers[k], want)
			}
		}
		needed := []string{"ce_id", "ce_source", "ce_time", "userstream_lsn", "userstream_commit_lsn"}
		if r.Headers["userstream_backfill"] == "true" || r.Headers["userstream_snapshot"] == "true" {
			needed = needed[:3] // a backfilled or snapshot event was read by a query, not from the WAL
		}
		for _, k := range needed {
			if r.Headers[k] == "" {
				t.Fatalf("record %s lacks header %s", r.Key, k)
			}
		}
		if r.Headers["ce_id"] != "user.created.v1:"+r.Key || !strings.HasSuffix(r.Headers["ce_source"], "/public.users") {
			t.Fatalf("record %s: ce_id %q, ce_source %q", r.Key, r.Headers["ce_id"], r.Headers["ce_source"])
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Headers["ce_time"]); err != nil {
			t.Fatalf("record %s: ce_time %q: %v", r.Key, r.Headers["ce_time"], err)
		}
	}
	return byKey
}
