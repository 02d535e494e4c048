package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

func TestTheStreamerStreamsWithKubernetesServiceLinksInItsEnvironment(t *testing.T) {
	t.Parallel()
	dsn, topic, slot := testenv.Postgres(t), testenv.Topic(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	env := append([]string{
		"DATABASE_URL=" + dsn, "KAFKA_BOOTSTRAP_SERVERS=" + testenv.Kafka(t), "KAFKA_TOPIC=" + topic,
		"REPLICATION_SLOT=" + slot, "METRICS_ADDR=127.0.0.1:0", "MIGRATE=false",
		"KAFKA_PROPERTY_CLIENT_ID=userstream-k8s-test", // the pass-through reaches librdkafka
	}, kubernetesServiceLinks...)
	p := e2e.Start(t, "streamer", testenv.Bin(t, "streamer"), env, "run")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const n = 20
	for i := range n {
		if _, err := conn.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'BE', '2021-01-01', 'test')`, fmt.Sprintf("k8s-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	records := testenv.Consume(t, testenv.Kafka(t), topic, n, 60*time.Second, time.Second)
	if len(records) != n {
		t.Fatalf("%d events, want %d", len(records), n)
	}
	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if out := p.Output(); strings.Contains(out, "ignoring KAFKA_ variables") || strings.Contains(out, "service.host") {
		t.Errorf("the streamer took a service link for a setting:\n%s", out)
	}
}

func TestTheStreamerRefusesToStartWithAnUnknownKafkaPropertyNamingItsVariable(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	p := e2e.Start(t, "streamer", testenv.Bin(t, "streamer"), []string{
		"DATABASE_URL=" + dsn, "KAFKA_BOOTSTRAP_SERVERS=" + testenv.Kafka(t), "METRICS_ADDR=127.0.0.1:0",
		"KAFKA_PROPERTY_SASL_USERNME=svc",
	}, "run")
	exited, err := p.Exited(30 * time.Second)
	if !exited || err == nil {
		t.Fatalf("the streamer did not stop with an error (exited %v, %v):\n%s", exited, err, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, `"sasl.usernme" (set by KAFKA_PROPERTY_SASL_USERNME)`) {
		t.Errorf("the error does not name the variable:\n%s", out)
	}
}
