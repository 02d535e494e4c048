package testenv

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Record is one consumed Kafka message.
type Record struct {
	Key       string
	Value     []byte
	Headers   map[string]string
	Partition int32
	Offset    int64
}

// Consume reads topic from the beginning with a plain consumer until it has
// at least want records, then keeps reading for quiet of silence to catch
// any extra, and returns everything read. It fails the test if want records
// do not arrive within timeout.
func Consume(t testing.TB, bootstrap, topic string, want int, timeout, quiet time.Duration) []Record {
	t.Helper()
	return ConsumeWith(t, map[string]string{"bootstrap.servers": bootstrap}, topic, want, timeout, quiet)
}

// ConsumeWith is Consume with more librdkafka properties, such as SASL
// credentials; props must name bootstrap.servers.
func ConsumeWith(t testing.TB, props map[string]string, topic string, want int, timeout, quiet time.Duration) []Record {
	t.Helper()
	cm := kafka.ConfigMap{
		"group.id":           Name(t, "group"),
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false,
		"log_level":          3,
	}
	for k, v := range props {
		cm[k] = v
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		t.Fatalf("testenv: consumer: %v", err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("testenv: subscribe: %v", err)
	}
	var out []Record
	deadline := time.Now().Add(timeout)
	var lastAt time.Time
	for {
		if len(out) >= want && time.Since(lastAt) > quiet {
			return out
		}
		if len(out) < want && time.Now().After(deadline) {
			t.Fatalf("testenv: consumed %d of %d records from %s in %s", len(out), want, topic, timeout)
		}
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			if kerr, ok := err.(kafka.Error); ok && (kerr.IsTimeout() || !kerr.IsFatal()) {
				continue
			}
			t.Fatalf("testenv: consume: %v", err)
		}
		r := Record{Key: string(m.Key), Value: m.Value, Headers: map[string]string{}, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}
		for _, h := range m.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
		out = append(out, r)
		lastAt = time.Now()
	}
}
