package main

import (
	"github.com/userstream/userstream/internal/kafkaprops"
)

// kafkaProperties gathers librdkafka settings as the streamer does; the
// archiver's own KAFKA_ settings are skipped.
func kafkaProperties(environ []string, file string) (map[string]string, error) {
	return kafkaprops.Gather(environ, file, "KAFKA_TOPIC", "KAFKA_GROUP_ID", "KAFKA_TOPIC_PARTITIONS")
}
