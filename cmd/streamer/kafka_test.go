package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// kubernetesServiceLinks are the variables Kubernetes injects into every pod
// of a namespace with a Service named kafka (and one named kafka-ui).
var kubernetesServiceLinks = []string{
	"KAFKA_SERVICE_HOST=10.0.0.1",
	"KAFKA_SERVICE_PORT=9092",
	"KAFKA_SERVICE_PORT_BROKER=9092",
	"KAFKA_PORT=tcp://10.0.0.1:9092",
	"KAFKA_PORT_9092_TCP=tcp://10.0.0.1:9092",
	"KAFKA_PORT_9092_TCP_PROTO=tcp",
	"KAFKA_PORT_9092_TCP_PORT=9092",
	"KAFKA_PORT_9092_TCP_ADDR=10.0.0.1",
	"KAFKA_UI_SERVICE_HOST=10.0.0.2",
	"KAFKA_UI_PORT_8080_TCP=tcp://10.0.0.2:8080",
}

func TestBadKafkaSettingsAreErrorsNamingTheirSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file, want string
		env              []string
	}{
		{name: "an unknown property in the pass-through", env: []string{"KAFKA_PROPERTY_NO_SUCH_SETTING=x"}, want: `"no.such.setting" (set by KAFKA_PROPERTY_NO_SUCH_SETTING)`},
		{name: "a bad value for an alias", env: []string{"KAFKA_PROPERTY_LINGER_MS=soon"}, want: `"linger.ms" (set by KAFKA_PROPERTY_LINGER_MS)`},
		{name: "an unknown property in the file", file: write("unknown.properties", "# ok\nsasl.usernme=svc\n"), want: `"sasl.usernme" (set by ` + filepath.Join(dir, "unknown.properties") + ` line 2)`},
		{name: "a guarded setting weakened", env: []string{"KAFKA_PROPERTY_ACKS=1"}, want: `"acks" (set by KAFKA_PROPERTY_ACKS)`},
		{name: "a file line without equals", file: write("noequals.properties", "sasl.username\n"), want: "line 1: want key=value"},
		{name: "the same property from two variables", env: []string{"KAFKA_SASL_USERNAME=a", "KAFKA_PROPERTY_SASL_USERNAME=b"}, want: "set by both KAFKA_PROPERTY_SASL_USERNAME and KAFKA_SASL_USERNAME"},
		{name: "a pass-through with no name", env: []string{"KAFKA_PROPERTY_=x"}, want: "KAFKA_PROPERTY_ names no kafka property"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range append([]string{"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1"}, tc.env...) {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			_, err := loadKafka(nopLogger, config{topic: "t", partitions: 1, kafkaPropsFile: tc.file})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

var nopLogger = zerolog.Nop()
