package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

// event is one consumed message, as every client reports it.
type event struct {
	Key     string            `json:"key"`
	Value   string            `json:"value"`
	Headers map[string]string `json:"headers"`
}

func TestThreeIndependentClientsReadEventsAsTheContractSays(t *testing.T) {
	t.Parallel()
	dsn, topic, slot, kafka := testenv.Postgres(t), testenv.Topic(t), testenv.Name(t, "slot"), testenv.Kafka(t)
	e2e.PrepareDatabase(t, dsn, slot)
	p := e2e.Start(t, "streamer", testenv.Bin(t, "streamer"), []string{
		"DATABASE_URL=" + dsn, "KAFKA_BOOTSTRAP_SERVERS=" + kafka, "KAFKA_TOPIC=" + topic,
		"REPLICATION_SLOT=" + slot, "METRICS_ADDR=127.0.0.1:0", "MIGRATE=false",
	}, "run")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	users := []struct{ name, country, createdAt, wantCreatedAt string }{
		{"jtr", "BE", "2021-01-01 00:00:00", "2021-01-01T00:00:00Z"},
		{"zoë-ünïcode", "FR", "2021-06-30 23:59:59.5", "2021-06-30T23:59:59.5Z"},
		{`quote"and\backslash`, "JP", "1999-12-31 12:00:00.123456", "1999-12-31T12:00:00.123456Z"},
	}
	want := map[string]string{} // key → exact value
	for _, u := range users {
		var id int64
		if err := conn.QueryRow(ctx, `INSERT INTO users (username, country_code, created_at, is_a_dog, api_version) VALUES ($1, $2, $3, true, 'test') RETURNING id`,
			u.name, u.country, u.createdAt).Scan(&id); err != nil {
			t.Fatal(err)
		}
		v, _ := json.Marshal(struct {
			Username    string `json:"username"`
			CountryCode string `json:"country_code"`
			CreatedAt   string `json:"created_at"`
		}{u.name, u.country, u.wantCreatedAt})
		want[strconv.FormatInt(id, 10)] = string(v)
	}
	var sysid, db string
	if err := conn.QueryRow(ctx, "SELECT system_identifier::text, current_database() FROM pg_control_system()").Scan(&sysid, &db); err != nil {
		t.Fatal(err)
	}
	source := "postgresql://" + url.PathEscape(sysid) + "/" + url.PathEscape(db) + "/public.users"
	// Wait with librdkafka, which the suite trusts, so the other clients read
	// a complete topic.
	testenv.Consume(t, kafka, topic, len(users), 60*time.Second, 0)
	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("streamer exit: %v", err)
	}

	clients := map[string][]event{
		"librdkafka (confluent-kafka-go)": librdkafkaEvents(t, kafka, topic, len(users)),
		"franz-go":                        franzEvents(t, kafka, topic, len(users)),
		"Python confluent_kafka (the article's consumer)": pythonEvents(t, kafka, topic, len(users)),
	}
	for client, events := range clients {
		t.Run(client, func(t *testing.T) {
			if len(events) != len(users) {
				t.Fatalf("%d events, want %d", len(events), len(users))
			}
			for _, e := range events {
				checkEvent(t, e, want, source)
			}
		})
	}
}

// checkEvent holds one event to the README's contract.
func checkEvent(t *testing.T, e event, want map[string]string, source string) {
	t.Helper()
	value, ok := want[e.Key]
	if !ok {
		t.Fatalf("key %q is no inserted user's id", e.Key)
	}
	if e.Value != value {
		t.Errorf("key %s: value %s, want exactly %s", e.Key, e.Value, value)
	}
	exact := map[string]string{
		"ce_specversion": "1.0", "ce_type": "user.created.v1", "ce_id": "user.created.v1:" + e.Key,
		"ce_subject": e.Key, "ce_source": source, "content-type": "application/json",
	}
	for h, w := range exact {
		if e.Headers[h] != w {
			t.Errorf("key %s: header %s = %q, want %q", e.Key, h, e.Headers[h], w)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Headers["ce_time"]); err != nil {
		t.Errorf("key %s: ce_time %q is not RFC 3339: %v", e.Key, e.Headers["ce_time"], err)
	}
	for _, h := range []string{"userstream_lsn", "userstream_commit_lsn"} {
		if _, err := pglogrepl.ParseLSN(e.Headers[h]); err != nil {
			t.Errorf("key %s: %s %q is not an LSN: %v", e.Key, h, e.Headers[h], err)
		}
	}
	if _, ok := e.Headers["userstream_backfill"]; ok {
		t.Errorf("key %s: a streamed event carries userstream_backfill", e.Key)
	}
}

func librdkafkaEvents(t *testing.T, kafka, topic string, n int) []event {
	var out []event
	for _, r := range testenv.Consume(t, kafka, topic, n, 60*time.Second, time.Second) {
		out = append(out, event{Key: r.Key, Value: string(r.Value), Headers: r.Headers})
	}
	return out
}

func franzEvents(t *testing.T, kafka, topic string, n int) []event {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []event
	for len(out) < n && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		for _, fe := range fetches.Errors() {
			if ctx.Err() == nil {
				t.Fatalf("franz-go fetch: %v", fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			e := event{Key: string(r.Key), Value: string(r.Value), Headers: map[string]string{}}
			for _, h := range r.Headers {
				e.Headers[h.Key] = string(h.Value)
			}
			out = append(out, e)
		})
	}
	return out
}

// pythonEvents runs the article's consumer with Debian's python3 and its
// python3-confluent-kafka (make test installs both).
func pythonEvents(t *testing.T, kafka, topic string, n int) []event {
	t.Helper()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("no %s: install Debian's python3-confluent-kafka (scripts/lib.sh ensure_test_deps does)", python)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/article_consumer.py", kafka, topic, testenv.Name(t, "group"), strconv.Itoa(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the article's consumer: %v\nstderr:\n%s", err, stderr.String())
	}
	var events []event
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("the article's consumer printed %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	if len(events) == 0 {
		t.Fatalf("the article's consumer printed nothing; stderr:\n%s", stderr.String())
	}
	return events
}
