package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/userstream/userstream/kafkasink"
)

// kafkaVariables are the documented KAFKA_* variables that carry a librdkafka
// property: what a managed Kafka needs most. Every other property goes
// through propertyPrefix or the properties file. No other KAFKA_* variable is
// read, because Kubernetes injects KAFKA_SERVICE_HOST, KAFKA_PORT_9092_TCP, …
// for a Service named kafka, and those are not librdkafka settings.
var kafkaVariables = map[string]string{
	"KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
	"KAFKA_SECURITY_PROTOCOL": "security.protocol",
	"KAFKA_SASL_MECHANISMS":   "sasl.mechanisms",
	"KAFKA_SASL_USERNAME":     "sasl.username",
	"KAFKA_SASL_PASSWORD":     "sasl.password",
	"KAFKA_SSL_CA_LOCATION":   "ssl.ca.location",
}

// streamerKafkaVariables are the streamer's own KAFKA_* settings (parseConfig
// reads them); they are not librdkafka properties.
var streamerKafkaVariables = []string{"KAFKA_TOPIC", "KAFKA_TOPIC_PARTITIONS", "KAFKA_PROPERTIES_FILE"}

// propertyPrefix is the explicit pass-through: KAFKA_PROPERTY_<NAME> sets the
// librdkafka property propertyName(<NAME>). Kubernetes never makes a variable
// of this shape unless a Service is named kafka-property-….
const propertyPrefix = "KAFKA_PROPERTY_"

// serviceLink matches the variables Kubernetes injects for a Service (see
// "Discovering services" in its docs); they are ignored without a warning.
var serviceLink = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$`)

// kafkaSettings are the librdkafka properties and where each was set.
type kafkaSettings struct {
	values  map[string]string
	sources map[string]string // property → "KAFKA_… variable" or "file line N"
	ignored []string          // KAFKA_* variables read by nobody that are not service links
}

// propertyName turns what follows KAFKA_PROPERTY_ into a librdkafka property
// with the convention of Confluent's Docker images: lower case, "_" is ".",
// "__" is "-" and "___" is "_". So KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG is
// sasl.oauthbearer.config and KAFKA_PROPERTY_SSL___KEY is ssl_key.
func propertyName(suffix string) string {
	s := strings.ToLower(suffix)
	s = strings.ReplaceAll(s, "___", "\x00")
	s = strings.ReplaceAll(s, "__", "-")
	s = strings.ReplaceAll(s, "_", ".")
	return strings.ReplaceAll(s, "\x00", "_")
}

// kafkaProperties gathers librdkafka settings from the documented variables
// and KAFKA_PROPERTY_*, then from the properties file, which is read last and
// wins. Two variables setting the same property are an error, since which one
// was meant cannot be told.
func kafkaProperties(environ []string, file string) (kafkaSettings, error) {
	ks := kafkaSettings{values: map[string]string{"bootstrap.servers": "localhost:9092"}, sources: map[string]string{"bootstrap.servers": "the default"}}
	set := func(prop, value, source string) error {
		if prev, ok := ks.sources[prop]; ok && strings.HasPrefix(prev, "KAFKA_") && strings.HasPrefix(source, "KAFKA_") {
			return fmt.Errorf("kafka property %s is set by both %s and %s: keep one", prop, prev, source)
		}
		ks.values[prop], ks.sources[prop] = value, source
		return nil
	}
	for _, kv := range slices.Sorted(slices.Values(environ)) {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KAFKA_") || slices.Contains(streamerKafkaVariables, k) {
			continue
		}
		prop, documented := kafkaVariables[k]
		switch {
		case documented:
		case strings.HasPrefix(k, propertyPrefix):
			prop = propertyName(strings.TrimPrefix(k, propertyPrefix))
			if strings.Trim(prop, ".-_") == "" {
				return ks, fmt.Errorf("%s names no kafka property: write it as %sSASL_OAUTHBEARER_CONFIG for sasl.oauthbearer.config", k, propertyPrefix)
			}
		default:
			if !serviceLink.MatchString(k) {
				ks.ignored = append(ks.ignored, k)
			}
			continue
		}
		if err := set(prop, v, k); err != nil {
			return ks, err
		}
	}
	if file == "" {
		return ks, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return ks, fmt.Errorf("kafka properties: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return ks, fmt.Errorf("kafka properties %s line %d: want key=value", file, n)
		}
		_ = set(strings.TrimSpace(k), strings.TrimSpace(v), fmt.Sprintf("%s line %d", file, n))
	}
	if err := sc.Err(); err != nil {
		return ks, fmt.Errorf("kafka properties %s: %w", file, err)
	}
	return ks, nil
}

// loadKafka reads the Kafka settings and has librdkafka check them, so an
// unknown property or a bad value stops the program at start-up naming the
// variable or file line that carried it.
func loadKafka(log zerolog.Logger, c config) (kafkaSettings, error) {
	ks, err := kafkaProperties(os.Environ(), c.kafkaPropsFile)
	if err != nil {
		return ks, err
	}
	if len(ks.ignored) > 0 {
		// Names only: values may be secrets.
		log.Warn().Strs("variables", ks.ignored).Str("hint", "librdkafka properties go in KAFKA_PROPERTY_<NAME> (sasl.oauthbearer.config: KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG) or KAFKA_PROPERTIES_FILE").
			Msg("ignoring KAFKA_ variables the streamer does not read")
	}
	if err := kafkasink.Check(ks.kafkaConfig(c)); err != nil {
		return ks, err
	}
	return ks, nil
}

func (ks kafkaSettings) kafkaConfig(c config) kafkasink.Config {
	return kafkasink.Config{Topic: c.topic, Partitions: c.partitions, Properties: ks.values, Sources: ks.sources, DeadLetterTopic: c.deadLetter}
}
