package main

import (
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/internal/kafkaenv"
)

// archiverKafkaVariables are the archiver's own KAFKA_* settings
// (parseConfig reads them); they are not librdkafka properties.
var archiverKafkaVariables = []string{"KAFKA_TOPIC", "KAFKA_GROUP_ID"}

// kafkaProperties gathers librdkafka settings as the streamer does (see
// internal/kafkaenv: the documented KAFKA_ variables, KAFKA_PROPERTY_<NAME>,
// then the properties file; Kubernetes' service links are ignored), and has
// librdkafka check them by making a consumer, so an unknown property or a bad
// value stops the archiver at start-up naming the variable or file line that
// set it.
func kafkaProperties(environ []string, file string) (map[string]string, error) {
	s, err := kafkaenv.Read(environ, file, archiverKafkaVariables...)
	if err != nil {
		return nil, err
	}
	cm := kafka.ConfigMap{"group.id": "userstream-archiver-config-check"}
	for k, v := range s.Values {
		cm[k] = v
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", s.Blame(err))
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	return s.Values, nil
}
