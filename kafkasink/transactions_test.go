package kafkasink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/kafkasink"
)

// drain serves a sink's delivery reports and logs, as librdkafka requires
// during commits.
func drain(s *kafkasink.Sink, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-s.Events():
		case <-s.Logs():
		}
	}
}

func TestASecondProducerOfTheSameTransactionalIDFencesTheFirst(t *testing.T) {
	t.Parallel()
	bootstrap, topic := testenv.Kafka(t), testenv.Topic(t)
	cfg := kafkasink.Config{Topic: topic, Partitions: 1, TransactionalID: testenv.Name(t, "txn"), ProgressTopic: topic + ".progress",
		Properties: map[string]string{"bootstrap.servers": bootstrap}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)

	first, err := kafkasink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	go drain(first, stop)
	if err := first.EnsureTopic(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := first.Produce([]byte("1"), []byte(`{"zombie":true}`), nil, nil); err != nil {
		t.Fatal(err)
	}

	second, err := kafkasink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	go drain(second, stop)
	if err := second.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := second.Produce([]byte("2"), []byte(`{"active":true}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := second.ProduceProgress([]byte("slot"), []byte(`{"at":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := second.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}

	err = first.CommitTransaction(ctx)
	if err == nil || !kafkasink.IsFenced(err) && !isFatal(err) {
		t.Fatalf("the fenced producer's commit: err = %v, want fenced", err)
	}
	records := testenv.ConsumeWith(t, map[string]string{"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}, topic, 1, 30*time.Second, 2*time.Second)
	if len(records) != 1 || records[0].Key != "2" {
		t.Fatalf("read_committed sees %v, want only the active producer's record", records)
	}
	last, err := kafkasink.LastValue(ctx, cfg.Properties, cfg.ProgressTopic, []byte("slot"))
	if err != nil || string(last) != `{"at":2}` {
		t.Fatalf("last progress = %q, %v; want the committed one", last, err)
	}
}

func isFatal(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.IsFatal()
}
