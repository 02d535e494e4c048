package archiver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/lake"
	"github.com/userstream/userstream/projection"
)

// event is one user.created.v1 record as the streamer makes it.
type event struct {
	partition int32
	key       string
	username  string
	ceID      string
	ceTime    time.Time
}

func events(prefix string, n, partitions int, day time.Time) []event {
	out := make([]event, n)
	for i := range out {
		out[i] = event{
			partition: int32(i % partitions), key: fmt.Sprint(i), username: fmt.Sprintf("%s-%05d", prefix, i),
			ceID: fmt.Sprintf("%d@0/%X", i, 0x16B0000+i), ceTime: day.Add(time.Duration(i) * time.Second),
		}
	}
	return out
}

func createTopic(t *testing.T, bootstrap, topic string, partitions int) {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: -1}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create topic %s: %v %v", topic, err, res)
	}
}

// produce writes evs in order to their partitions and returns the offset
// Kafka gave each (same index).
func produce(t *testing.T, bootstrap, topic string, evs []event) []int64 {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "enable.idempotence": true, "linger.ms": 5, "log_level": 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, len(evs))
	for i, e := range evs {
		value := fmt.Sprintf(`{"username":%q,"country_code":"BE","created_at":"2024-05-06T07:08:09Z"}`, e.username)
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: e.partition},
			Key:            []byte(e.key), Value: []byte(value), Opaque: i,
			Headers: []kafka.Header{
				{Key: "ce_specversion", Value: []byte("1.0")},
				{Key: "ce_type", Value: []byte(projection.UserCreatedType)},
				{Key: "ce_source", Value: []byte("postgresql://1/test/public.users")},
				{Key: "ce_id", Value: []byte(e.ceID)},
				{Key: "ce_time", Value: []byte(e.ceTime.UTC().Format(time.RFC3339Nano))},
				{Key: "userstream_lsn", Value: []byte("0/16B3748")},
			},
		}, reports)
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	offsets := make([]int64, len(evs))
	for range evs {
		m := (<-reports).(*kafka.Message)
		if m.TopicPartition.Error != nil {
			t.Fatalf("delivery: %v", m.TopicPartition.Error)
		}
		offsets[m.Opaque.(int)] = int64(m.TopicPartition.Offset)
	}
	return offsets
}

// running is an archiver run in this process.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs an archiver in this process on the lake at lakeURL.
func start(t *testing.T, lakeURL, bootstrap, topic, group string, roll archiver.Policy) *running {
	t.Helper()
	l, err := lake.Open(context.Background(), lakeURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	schemas, err := eventfile.Contracts(envelope.Schemas)
	if err != nil {
		t.Fatal(err)
	}
	a := archiver.New(archiver.Config{
		Topic: topic, Group: group, Roll: roll, SpoolDir: t.TempDir(),
		Properties: map[string]string{"bootstrap.servers": bootstrap, "session.timeout.ms": "6000"},
	}, l, schemas, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), archiver.NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run and returns its error (once; later calls return nil).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the archiver did not stop within a minute")
		return nil
	}
}

func group(t *testing.T) string { return testenv.Name(t, "archivers") }
