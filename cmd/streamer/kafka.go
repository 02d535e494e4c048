package main

import (
	"os"

	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/kafkaenv"
	"github.com/userstream/userstream/kafkaclient"
)

// streamerKafkaVariables are the streamer's own KAFKA_* settings (parseConfig
// reads them); they are not librdkafka properties.
var streamerKafkaVariables = []string{"KAFKA_TOPIC", "KAFKA_TOPIC_PARTITIONS"}

// kafkaSettings are the librdkafka properties and where each was set;
// values is Settings.Values, the name main.go's start-up log reads.
type kafkaSettings struct {
	kafkaenv.Settings
	values map[string]string
}

func kafkaProperties(environ []string, file string) (kafkaSettings, error) {
	s, err := kafkaenv.Read(environ, file, streamerKafkaVariables...)
	return kafkaSettings{Settings: s, values: s.Values}, err
}

// loadKafka reads the Kafka settings and has librdkafka check them, so an
// unknown property or a bad value stops the program at start-up naming the
// variable or file line that carried it.
func loadKafka(log zerolog.Logger, c config) (kafkaSettings, error) {
	ks, err := kafkaProperties(os.Environ(), c.kafkaPropsFile)
	if err != nil {
		return ks, err
	}
	if len(ks.Ignored) > 0 {
		// Names only: values may be secrets.
		log.Warn().Strs("variables", ks.Ignored).Str("hint", kafkaenv.IgnoredHint).Msg("ignoring KAFKA_ variables the streamer does not read")
	}
	if err := kafkaclient.Check(ks.kafkaConfig(c)); err != nil {
		return ks, err
	}
	return ks, nil
}

func (ks kafkaSettings) kafkaConfig(c config) kafkaclient.Config {
	return kafkaclient.Config{Topic: c.topic, Partitions: c.partitions, Properties: ks.Values, Sources: ks.Sources, DeadLetterTopic: c.deadLetter}
}
