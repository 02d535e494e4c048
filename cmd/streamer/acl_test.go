package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/userstream/userstream/internal/devkafka"
	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/kafkaclient"
)

func TestTheStreamerStreamsWithOnlyWriteAndDescribeOnItsTopics(t *testing.T) {
	t.Parallel()
	// A least-privilege Kafka: SASL, ACLs, and a streamer principal that
	// may WRITE (which implies DESCRIBE) its topics but create nothing.
	b, err := devkafka.Start(devkafka.Config{Auth: &devkafka.Auth{
		Admin: devkafka.User{Name: "admin", Password: "admin-pw"},
		Users: []devkafka.User{{Name: "streamer", Password: "streamer-pw", ACLs: []kfake.ACL{{
			Resource: kmsg.ACLResourceTypeTopic, Name: "users.created", Pattern: kmsg.ACLResourcePatternTypePrefixed,
			Operation: kmsg.ACLOperationWrite, Allow: true,
		}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	sasl := func(user string) map[string]string {
		return map[string]string{"bootstrap.servers": b.Addr(), "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
			"sasl.username": user, "sasl.password": user + "-pw"}
	}
	// The platform team creates the topic, its dead-letter topic and the
	// progress topic.
	admin, err := kafkaclient.New(kafkaclient.Config{Topic: "users.created", DeadLetterTopic: "users.created.dlq", ProgressTopic: "users.created.progress", Partitions: 3, Properties: sasl("admin")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.EnsureTopic(ctx); err != nil {
		t.Fatal(err)
	}
	admin.Close()

	dsn, slot := testenv.Postgres(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	p := e2e.Start(t, "streamer", testenv.Bin(t, "streamer"), []string{
		"DATABASE_URL=" + dsn, "REPLICATION_SLOT=" + slot, "METRICS_ADDR=127.0.0.1:0", "MIGRATE=false",
		"KAFKA_BOOTSTRAP_SERVERS=" + b.Addr(), "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT", "KAFKA_SASL_MECHANISMS=PLAIN",
		"KAFKA_SASL_USERNAME=streamer", "KAFKA_SASL_PASSWORD=streamer-pw",
	}, "run")

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const n = 10
	for i := range n {
		if _, err := conn.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'BE', '2021-01-01', 'test')`, fmt.Sprintf("acl-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testenv.ConsumeWith(t, sasl("admin"), "users.created", n, 60*time.Second, time.Second); len(got) != n {
		t.Fatalf("%d events, want %d", len(got), n)
	}
	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.Output())
	}
}

func TestTheStreamerStopsNamingTheACLWhenItsTopicIsMissingAndItMayNotCreateIt(t *testing.T) {
	t.Parallel()
	b, err := devkafka.Start(devkafka.Config{Auth: &devkafka.Auth{
		Admin: devkafka.User{Name: "admin", Password: "admin-pw"},
		Users: []devkafka.User{{Name: "streamer", Password: "streamer-pw", ACLs: []kfake.ACL{{
			Resource: kmsg.ACLResourceTypeTopic, Name: "users.created", Pattern: kmsg.ACLResourcePatternTypePrefixed,
			Operation: kmsg.ACLOperationWrite, Allow: true,
		}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dsn, slot := testenv.Postgres(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	p := e2e.Start(t, "streamer", testenv.Bin(t, "streamer"), []string{
		"DATABASE_URL=" + dsn, "REPLICATION_SLOT=" + slot, "METRICS_ADDR=127.0.0.1:0", "MIGRATE=false",
		"KAFKA_BOOTSTRAP_SERVERS=" + b.Addr(), "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT", "KAFKA_SASL_MECHANISMS=PLAIN",
		"KAFKA_SASL_USERNAME=streamer", "KAFKA_SASL_PASSWORD=streamer-pw",
	}, "run")
	exited, err := p.Exited(60 * time.Second)
	if !exited || err == nil {
		t.Fatalf("the streamer did not stop with an error (exited %v, %v): it retries what only an operator can fix\n%s", exited, err, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, "CREATE ACL") || !strings.Contains(out, "users.created") {
		t.Errorf("the error does not name the topic and the ACL:\n%s", out)
	}
}
