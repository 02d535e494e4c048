package kafkaclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/kafkaclient"
)

// drain serves a sink's delivery reports and logs, as librdkafka requires
// during commits.
func drain(s *kafkaclient.Producer, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-s.Events():
		case <-s.Logs():
		}
	}
}

// A zombie is fenced whether its records had reached the broker when the
// newer producer took over, or were still queued (a transactional producer
// lingers until its commit): its commit fails and read_committed consumers
// never see its record. Which error the commit gets depends on the broker:
// fenced (or fatal) once its records were sent; a queued record may first
// be refused as out of transaction, which also requires an abort.
func TestASecondProducerOfTheSameTransactionalIDFencesTheFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sent    bool // the zombie's record reached the broker before the takeover
		refused func(error) bool
	}{
		{"its records sent", true, func(err error) bool { return kafkaclient.IsFenced(err) || isFatal(err) }},
		{"its records still queued", false, func(err error) bool {
			return kafkaclient.IsFenced(err) || isFatal(err) || kafkaclient.RequiresAbort(err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fenceTheFirst(t, tc.sent, tc.refused)
		})
	}
}

func fenceTheFirst(t *testing.T, sent bool, refused func(error) bool) {
	bootstrap, topic := testenv.Kafka(t), testenv.Topic(t)
	cfg := kafkaclient.Config{Topic: topic, Partitions: 1, TransactionalID: testenv.Name(t, "txn"), ProgressTopic: topic + ".progress",
		Properties: map[string]string{"bootstrap.servers": bootstrap}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)

	first, err := kafkaclient.New(cfg)
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
	if sent {
		// Acknowledged by the broker, not yet committed: the linger passed.
		for first.Len() > 0 {
			if ctx.Err() != nil {
				t.Fatal("the zombie's record was never sent")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	second, err := kafkaclient.New(cfg)
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
	if err == nil || !refused(err) {
		t.Fatalf("the fenced producer's commit: err = %v, want it refused", err)
	}
	records := testenv.ConsumeWith(t, map[string]string{"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}, topic, 1, 30*time.Second, 2*time.Second)
	if len(records) != 1 || records[0].Key != "2" {
		t.Fatalf("read_committed sees %v, want only the active producer's record", records)
	}
	last, err := kafkaclient.LastValue(ctx, cfg.Properties, cfg.ProgressTopic, []byte("slot"))
	if err != nil || string(last) != `{"at":2}` {
		t.Fatalf("last progress = %q, %v; want the committed one", last, err)
	}
}

func isFatal(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.IsFatal()
}
