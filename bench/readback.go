package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// readBack counts the records of topic a read_committed consumer sees,
// reading until want have arrived and then until idle passes without
// another (so extra copies show too), or until idle passes with fewer.
// It checks the catch-up's end condition from the outside: once the slot
// confirmed the range, every event must be readable.
func readBack(ctx context.Context, bootstrap, topic string, want int, idle time.Duration) (int, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": topic + "-readback",
		"auto.offset.reset": "earliest", "enable.auto.commit": false, "isolation.level": "read_committed", "log_level": 3})
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	n, last := 0, time.Now()
	for time.Since(last) < idle || (n < want && time.Since(last) < 10*idle) {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			n++
			last = time.Now()
		case kafka.Error:
			if e.IsFatal() {
				return n, fmt.Errorf("read back: %w", e)
			}
		}
	}
	return n, nil
}

// runID tells this run's topics from those of earlier runs on the same
// broker: slot names restart with every run, and a topic that already holds
// records would be counted in the read-back.
var runID = strconv.FormatInt(time.Now().Unix(), 36)

// topicFor is the topic a streamer reading slot writes to in this run.
func topicFor(slot string) string { return "bench." + runID + "." + slot }
