// Package kafkaprops reads librdkafka settings from the environment and a
// properties file, the way the programs document them: KAFKA_BOOTSTRAP_SERVERS
// and every other KAFKA_* variable (KAFKA_SASL_MECHANISMS → sasl.mechanisms),
// then the file's key=value lines, which win.
package kafkaprops

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Gather returns the librdkafka settings in environ and file (may be empty).
// Variables named in own are the program's own settings, not librdkafka's.
func Gather(environ []string, file string, own ...string) (map[string]string, error) {
	skip := map[string]bool{"KAFKA_PROPERTIES_FILE": true, "KAFKA_PORT": true}
	for _, o := range own {
		skip[o] = true
	}
	props := map[string]string{"bootstrap.servers": "localhost:9092"}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KAFKA_") || skip[k] {
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
