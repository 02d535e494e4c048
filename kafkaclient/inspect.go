package kafkaclient

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// HasRecords reports whether any of the topics ever held a record: a
// partition's high watermark never goes back, even after retention deleted
// everything, so it tells a topic that was streamed to from a new one. A
// topic that does not exist holds nothing.
func (s *Producer) HasRecords(ctx context.Context, topics ...string) (bool, error) {
	timeout := timeoutMs(ctx, 10*time.Second)
	md, err := s.p.GetMetadata(nil, true, timeout)
	if err != nil {
		return false, fmt.Errorf("read kafka metadata: %w", err)
	}
	for _, topic := range topics {
		tm, ok := md.Topics[topic]
		if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
			continue
		}
		if tm.Error.Code() != kafka.ErrNoError {
			return false, fmt.Errorf("read kafka metadata of %s: %w", topic, tm.Error)
		}
		for _, p := range tm.Partitions {
			_, high, err := s.p.QueryWatermarkOffsets(topic, p.ID, timeout)
			if err != nil {
				return false, fmt.Errorf("read the offsets of %s[%d]: %w", topic, p.ID, err)
			}
			if high > 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// ReadKeys reads every record of topic present when it is called, from the
// first retained offset up to the high watermarks of that moment, and calls
// fn with each key. It uses no consumer group and commits nothing. Only
// committed records are read (read_committed).
func ReadKeys(ctx context.Context, properties map[string]string, topic string, fn func(key []byte)) error {
	return ReadRecords(ctx, properties, topic, func(key, _ []byte) { fn(key) })
}

// ReadRecords is ReadKeys with each record's value too.
func ReadRecords(ctx context.Context, properties map[string]string, topic string, fn func(key, value []byte)) error {
	cm := kafka.ConfigMap{}
	for k, v := range maps.All(properties) {
		if err := cm.SetKey(k, goTyped(k, v)); err != nil {
			return fmt.Errorf("kafka setting %s: %w", k, err)
		}
	}
	// A consumer refuses producer-only settings; they do not matter here.
	for _, k := range producerOnly {
		delete(cm, k)
	}
	// The reader stops at the end it found first; a fetch at that end would
	// otherwise sit on the broker for fetch.wait.max.ms (500 ms) waiting for
	// records that are not needed, and every session start reads this way.
	for k, v := range map[string]kafka.ConfigValue{"group.id": "userstream-readkeys", "enable.auto.commit": false,
		"isolation.level": "read_committed", "enable.partition.eof": true, "log_level": 3, "fetch.wait.max.ms": 10} {
		cm[k] = v
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return fmt.Errorf("create kafka consumer: %w", err)
	}
	defer c.Close()
	timeout := timeoutMs(ctx, 30*time.Second)
	md, err := c.GetMetadata(&topic, false, timeout)
	if err != nil {
		return fmt.Errorf("read kafka metadata of %s: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
		return nil
	}
	var assign []kafka.TopicPartition
	end := map[int32]int64{}
	for _, p := range tm.Partitions {
		low, high, err := c.QueryWatermarkOffsets(topic, p.ID, timeout)
		if err != nil {
			return fmt.Errorf("read the offsets of %s[%d]: %w", topic, p.ID, err)
		}
		if high > low {
			end[p.ID] = high
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.Offset(low)})
		}
	}
	if len(assign) == 0 {
		return nil
	}
	if err := c.Assign(assign); err != nil {
		return fmt.Errorf("assign %s: %w", topic, err)
	}
	for len(end) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := c.Poll(100)
		switch e := ev.(type) {
		case *kafka.Message:
			fn(e.Key, e.Value)
			p := e.TopicPartition.Partition
			// With read_committed, transaction markers take offsets too: the
			// end is reached at the last offset before the high watermark.
			if h, ok := end[p]; ok && int64(e.TopicPartition.Offset) >= h-1 {
				delete(end, p)
			}
		case kafka.PartitionEOF:
			delete(end, e.Partition)
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("read %s: %w", topic, e)
			}
		}
		for p, h := range end {
			if pos, err := c.Position([]kafka.TopicPartition{{Topic: &topic, Partition: p}}); err == nil && len(pos) == 1 && int64(pos[0].Offset) >= h {
				delete(end, p)
			}
		}
	}
	return nil
}

// producerOnly are the producer settings a consumer refuses, and the
// producer's logs channel, which nobody would drain here.
var producerOnly = []string{"enable.idempotence", "acks", "compression.type", "linger.ms", "queue.buffering.max.ms", "partitioner",
	"message.timeout.ms", "queue.buffering.max.messages", "queue.buffering.max.kbytes", "transactional.id",
	"go.delivery.reports", "go.delivery.report.fields", "go.batch.producer", "go.produce.channel.size", "go.logs.channel.enable"}

func timeoutMs(ctx context.Context, def time.Duration) int {
	if d, ok := ctx.Deadline(); ok {
		def = min(def, time.Until(d))
	}
	return int(max(def, time.Millisecond) / time.Millisecond)
}
