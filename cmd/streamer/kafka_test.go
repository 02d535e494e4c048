package main

import (
	"os"
	"path/filepath"
	"slices"
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

func TestKafkaSettingsComeOnlyFromDocumentedVariablesThePassThroughAndTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(file, []byte("# managed Kafka\nsasl.password = from-file\n\nssl.ca.location=/etc/ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092",
		"KAFKA_SECURITY_PROTOCOL=SASL_SSL",
		"KAFKA_SASL_MECHANISMS=PLAIN",
		"KAFKA_SASL_USERNAME=svc",
		"KAFKA_SASL_PASSWORD=from-env",
		"KAFKA_PROPERTY_CLIENT_ID=userstream",
		"KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG=a=b",
		"KAFKA_PROPERTY_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none",
		"KAFKA_TOPIC=users.created",
		"KAFKA_TOPIC_PARTITIONS=12",
		"KAFKA_PROPERTIES_FILE=" + file,
		"PATH=/bin",
	}, kubernetesServiceLinks...)
	got, err := kafkaProperties(env, file)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"bootstrap.servers":                     "b1:9092,b2:9092",
		"security.protocol":                     "SASL_SSL",
		"sasl.mechanisms":                       "PLAIN",
		"sasl.username":                         "svc",
		"sasl.password":                         "from-file", // the file is read after the variables
		"ssl.ca.location":                       "/etc/ca.pem",
		"client.id":                             "userstream",
		"sasl.oauthbearer.config":               "a=b", // only the first "=" separates name and value
		"ssl.endpoint.identification.algorithm": "none",
	}
	if len(got.values) != len(want) {
		t.Errorf("got %d settings %v, want %d: service links and the streamer's own KAFKA_ variables are not librdkafka's", len(got.values), got.values, len(want))
	}
	for k, v := range want {
		if got.values[k] != v {
			t.Errorf("%s = %q, want %q", k, got.values[k], v)
		}
	}
	for prop, source := range map[string]string{"sasl.password": file + " line 2", "client.id": "KAFKA_PROPERTY_CLIENT_ID", "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS"} {
		if got.sources[prop] != source {
			t.Errorf("source of %s = %q, want %q", prop, got.sources[prop], source)
		}
	}
	if len(got.ignored) != 0 {
		t.Errorf("service links reported as ignored settings: %v", got.ignored)
	}
}

func TestPropertyNamesFollowConfluentsDockerConvention(t *testing.T) {
	tests := []struct{ suffix, want string }{
		{"CLIENT_ID", "client.id"},
		{"LINGER_MS", "linger.ms"},
		{"SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "sasl.oauthbearer.token.endpoint.url"},
		{"SSL___KEY", "ssl_key"},                  // three underscores are one underscore
		{"LOG___LEVEL", "log_level"},              // a librdkafka name with an underscore
		{"SOME__DASHED_NAME", "some-dashed.name"}, // two are a dash
		{"ENABLE_SASL_OAUTHBEARER_UNSECURE_JWT", "enable.sasl.oauthbearer.unsecure.jwt"},
	}
	for _, tc := range tests {
		if got := propertyName(tc.suffix); got != tc.want {
			t.Errorf("KAFKA_PROPERTY_%s → %q, want %q", tc.suffix, got, tc.want)
		}
	}
}

func TestAVariableNobodyReadsIsReportedButAServiceLinkIsNot(t *testing.T) {
	got, err := kafkaProperties(append([]string{"KAFKA_SASL_OAUTHBEARER_CONFIG=x", "KAFKA_CLIENT_ID=y"}, kubernetesServiceLinks...), "")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.ignored)
	if want := []string{"KAFKA_CLIENT_ID", "KAFKA_SASL_OAUTHBEARER_CONFIG"}; !slices.Equal(got.ignored, want) {
		t.Errorf("ignored %v, want %v", got.ignored, want)
	}
	if len(got.values) != 1 {
		t.Errorf("settings %v, want only the default bootstrap.servers", got.values)
	}
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
		{name: "an unknown property in the pass-through", env: []string{"KAFKA_PROPERTY_SERVICE_HOST=10.0.0.1"}, want: `"service.host" (set by KAFKA_PROPERTY_SERVICE_HOST)`},
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
