package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/userstream/userstream/internal/testenv"
)

func TestPostgresStreamsAnInsertThroughAPgoutputSlot(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testenv.Postgres(t)
	slot := testenv.Name(t, "slot")

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"CREATE TABLE smoke (id int PRIMARY KEY, note text)",
		"CREATE PUBLICATION smoke_pub FOR TABLE smoke",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	rconn, err := pgconn.Connect(ctx, dsn+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	created, err := pglogrepl.CreateReplicationSlot(ctx, rconn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start, err := pglogrepl.ParseLSN(created.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO smoke VALUES (1, 'hello')"); err != nil {
		t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, rconn, slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'smoke_pub'"},
	})
	if err != nil {
		t.Fatal(err)
	}

	var got []string
	for got == nil {
		msg, err := rconn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		lm, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatal(err)
		}
		if ins, ok := lm.(*pglogrepl.InsertMessage); ok {
			for _, c := range ins.Tuple.Columns {
				got = append(got, string(c.Data))
			}
		}
	}
	if want := []string{"1", "hello"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("insert columns = %q, want %q", got, want)
	}
}

func TestKafkaTakesAnIdempotentProduceAndGivesItBack(t *testing.T) {
	t.Parallel()
	bootstrap, topic := testenv.Kafka(t), testenv.Topic(t)
	createTopic(t, bootstrap, topic)
	produce(t, bootstrap, topic, "k1", "v1")
	if got := consumeOne(t, bootstrap, topic); got != "k1=v1" {
		t.Fatalf("consumed %q, want k1=v1", got)
	}
}

func TestBrokerKeepsMessagesAcrossACleanRestart(t *testing.T) {
	t.Parallel()
	b := testenv.NewBroker(t)
	topic := testenv.Topic(t)
	createTopic(t, b.Addr(), topic)
	produce(t, b.Addr(), topic, "k", "persisted")
	b.Restart(t)
	if got := consumeOne(t, b.Addr(), topic); got != "k=persisted" {
		t.Fatalf("after restart consumed %q, want k=persisted", got)
	}
}

func createTopic(t *testing.T, bootstrap, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create topic: %v", res[0].Error)
	}
}

func produce(t *testing.T, bootstrap, topic, key, value string) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"enable.idempotence": true,
		"acks":               "all",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan kafka.Event, 1)
	err = p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            []byte(key),
		Value:          []byte(value),
	}, done)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-done:
		if m := ev.(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("delivery: %v", m.TopicPartition.Error)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery report in 30 s")
	}
}

func consumeOne(t *testing.T, bootstrap, topic string) string {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap,
		"group.id":          testenv.Name(t, "group"),
		"auto.offset.reset": "earliest",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			if kerr, ok := err.(kafka.Error); ok && kerr.IsTimeout() {
				continue
			}
			t.Fatalf("consume: %v", err)
		}
		return fmt.Sprintf("%s=%s", m.Key, m.Value)
	}
	t.Fatal("no message consumed in 30 s")
	return ""
}
