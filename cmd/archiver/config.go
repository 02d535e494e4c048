package main

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// kafkaProperties gathers librdkafka settings as the streamer does:
// KAFKA_BOOTSTRAP_SERVERS and every other KAFKA_* variable
// (KAFKA_SASL_MECHANISMS → sasl.mechanisms), then the properties file. The
// archiver's own KAFKA_ settings are skipped.
func kafkaProperties(environ []string, file string) (map[string]string, error) {
	own := map[string]bool{"KAFKA_TOPIC": true, "KAFKA_GROUP_ID": true, "KAFKA_TOPIC_PARTITIONS": true, "KAFKA_PROPERTIES_FILE": true, "KAFKA_PORT": true}
	props := map[string]string{"bootstrap.servers": "localhost:9092"}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KAFKA_") || own[k] {
			continue
		}
		props[strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "KAFKA_")), "_", ".")] = v
	}
	if file == "" {
		return props, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("kafka properties: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("kafka properties %s line %d: want key=value", file, n)
		}
		props[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return props, sc.Err()
}

// redactURL drops credentials and query parameters (which may carry keys)
// from a lake URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
