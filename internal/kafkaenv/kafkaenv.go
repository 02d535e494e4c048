// Package kafkaenv reads librdkafka properties from the environment and a
// properties file, the same way for every program that talks to Kafka.
//
// Only documented variables are read, plus one explicit pass-through,
// KAFKA_PROPERTY_<NAME>: Kubernetes injects KAFKA_SERVICE_HOST,
// KAFKA_PORT_9092_TCP, … into every pod of a namespace with a Service named
// kafka, and those are not librdkafka settings.
package kafkaenv

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Variables are the documented KAFKA_* variables that carry a librdkafka
// property: what a managed Kafka needs most. Every other property goes
// through PropertyPrefix or the properties file.
var Variables = map[string]string{
	"KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
	"KAFKA_SECURITY_PROTOCOL": "security.protocol",
	"KAFKA_SASL_MECHANISMS":   "sasl.mechanisms",
	"KAFKA_SASL_USERNAME":     "sasl.username",
	"KAFKA_SASL_PASSWORD":     "sasl.password",
	"KAFKA_SSL_CA_LOCATION":   "ssl.ca.location",
}

// PropertyPrefix is the explicit pass-through: KAFKA_PROPERTY_<NAME> sets the
// librdkafka property PropertyName(<NAME>). Kubernetes makes a variable of
// this shape only for a Service named kafka-property-….
const PropertyPrefix = "KAFKA_PROPERTY_"

// serviceLink matches the variables Kubernetes injects for a Service
// ("Discovering services" in its documentation); they are ignored silently.
var serviceLink = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$`)

// Settings are librdkafka properties and where each was set.
type Settings struct {
	Values  map[string]string
	Sources map[string]string // property → "KAFKA_… variable" or "<file> line N"
	// Ignored lists KAFKA_* variables nobody reads that are not Kubernetes
	// service links: probably a property meant for KAFKA_PROPERTY_….
	Ignored []string
}

// PropertyName turns what follows KAFKA_PROPERTY_ into a librdkafka property
// with the convention of Confluent's Docker images: lower case, "_" is ".",
// "__" is "-" and "___" is "_". So KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG is
// sasl.oauthbearer.config and KAFKA_PROPERTY_LOG___LEVEL is log_level.
func PropertyName(suffix string) string {
	s := strings.ToLower(suffix)
	s = strings.ReplaceAll(s, "___", "\x00")
	s = strings.ReplaceAll(s, "__", "-")
	s = strings.ReplaceAll(s, "_", ".")
	return strings.ReplaceAll(s, "\x00", "_")
}

// Read gathers librdkafka settings from the documented variables and
// KAFKA_PROPERTY_*, then from the properties file, which is read last and
// wins. own lists the program's own KAFKA_* settings (KAFKA_TOPIC, …), which
// are not librdkafka's. Two variables setting one property are an error,
// since which one was meant cannot be told.
func Read(environ []string, file string, own ...string) (Settings, error) {
	s := Settings{Values: map[string]string{"bootstrap.servers": "localhost:9092"}, Sources: map[string]string{"bootstrap.servers": "the default"}}
	set := func(prop, value, source string) error {
		if prev, ok := s.Sources[prop]; ok && strings.HasPrefix(prev, "KAFKA_") && strings.HasPrefix(source, "KAFKA_") {
			return fmt.Errorf("kafka property %s is set by both %s and %s: keep one", prop, prev, source)
		}
		s.Values[prop], s.Sources[prop] = value, source
		return nil
	}
	for _, kv := range slices.Sorted(slices.Values(environ)) {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KAFKA_") || k == "KAFKA_PROPERTIES_FILE" || slices.Contains(own, k) {
			continue
		}
		prop, documented := Variables[k]
		switch {
		case documented:
		case serviceLink.MatchString(k):
			// Checked before the pass-through: a Service named kafka-property
			// injects KAFKA_PROPERTY_SERVICE_HOST, and no librdkafka property
			// ends like a service link.
			continue
		case strings.HasPrefix(k, PropertyPrefix):
			prop = PropertyName(strings.TrimPrefix(k, PropertyPrefix))
			if strings.Trim(prop, ".-_") == "" {
				return s, fmt.Errorf("%s names no kafka property: write it as %sSASL_OAUTHBEARER_CONFIG for sasl.oauthbearer.config", k, PropertyPrefix)
			}
		default:
			s.Ignored = append(s.Ignored, k)
			continue
		}
		if err := set(prop, v, k); err != nil {
			return s, err
		}
	}
	if file == "" {
		return s, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return s, fmt.Errorf("kafka properties: %w", err)
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
			return s, fmt.Errorf("kafka properties %s line %d: want key=value", file, n)
		}
		_ = set(strings.TrimSpace(k), strings.TrimSpace(v), fmt.Sprintf("%s line %d", file, n))
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("kafka properties %s: %w", file, err)
	}
	return s, nil
}

// IgnoredHint is what to tell an operator whose KAFKA_* variables were
// ignored.
const IgnoredHint = "librdkafka properties go in KAFKA_PROPERTY_<NAME> (sasl.oauthbearer.config: KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG) or KAFKA_PROPERTIES_FILE"

// Blame names the sources of the properties a librdkafka configuration
// error quotes (`No such configuration property: "x"`), which librdkafka
// cannot know.
func (s Settings) Blame(err error) error {
	var named []string
	for _, k := range slices.Sorted(maps.Keys(s.Values)) {
		if strings.Contains(err.Error(), strconv.Quote(k)) {
			named = append(named, fmt.Sprintf("%q (set by %s)", k, s.Sources[k]))
		}
	}
	if len(named) == 0 {
		return err
	}
	return fmt.Errorf("kafka property %s: %w", strings.Join(named, ", "), err)
}
