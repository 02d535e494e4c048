package kafkaenv_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/userstream/userstream/internal/kafkaenv"
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
	got, err := kafkaenv.Read(env, file, "KAFKA_TOPIC", "KAFKA_TOPIC_PARTITIONS")
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
	if len(got.Values) != len(want) {
		t.Errorf("got %d settings %v, want %d: service links and the streamer's own KAFKA_ variables are not librdkafka's", len(got.Values), got.Values, len(want))
	}
	for k, v := range want {
		if got.Values[k] != v {
			t.Errorf("%s = %q, want %q", k, got.Values[k], v)
		}
	}
	for prop, source := range map[string]string{"sasl.password": file + " line 2", "client.id": "KAFKA_PROPERTY_CLIENT_ID", "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS"} {
		if got.Sources[prop] != source {
			t.Errorf("source of %s = %q, want %q", prop, got.Sources[prop], source)
		}
	}
	if len(got.Ignored) != 0 {
		t.Errorf("service links reported as ignored settings: %v", got.Ignored)
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
		if got := kafkaenv.PropertyName(tc.suffix); got != tc.want {
			t.Errorf("KAFKA_PROPERTY_%s → %q, want %q", tc.suffix, got, tc.want)
		}
	}
}

func TestAVariableNobodyReadsIsReportedButAServiceLinkIsNot(t *testing.T) {
	got, err := kafkaenv.Read(append([]string{"KAFKA_SASL_OAUTHBEARER_CONFIG=x", "KAFKA_CLIENT_ID=y"}, kubernetesServiceLinks...), "", "KAFKA_TOPIC")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got.Ignored)
	if want := []string{"KAFKA_CLIENT_ID", "KAFKA_SASL_OAUTHBEARER_CONFIG"}; !slices.Equal(got.Ignored, want) {
		t.Errorf("ignored %v, want %v", got.Ignored, want)
	}
	if len(got.Values) != 1 {
		t.Errorf("settings %v, want only the default bootstrap.servers", got.Values)
	}
}

func TestAServiceNamedKafkaPropertyIsAServiceLinkNotAProperty(t *testing.T) {
	links := []string{"KAFKA_PROPERTY_SERVICE_HOST=10.0.0.9", "KAFKA_PROPERTY_SERVICE_PORT=9092", "KAFKA_PROPERTY_PORT=tcp://10.0.0.9:9092",
		"KAFKA_PROPERTY_PORT_9092_TCP=tcp://10.0.0.9:9092", "KAFKA_PROPERTY_X_SERVICE_HOST=10.0.0.8"}
	got, err := kafkaenv.Read(append(links, "KAFKA_PROPERTY_CLIENT_ID=userstream"), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bootstrap.servers": "localhost:9092", "client.id": "userstream"}
	if !maps.Equal(got.Values, want) || len(got.Ignored) != 0 {
		t.Errorf("settings %v (ignored %v), want %v and nothing reported", got.Values, got.Ignored, want)
	}
}

func TestTheArchiversOwnVariablesAreNotKafkaProperties(t *testing.T) {
	got, err := kafkaenv.Read([]string{"KAFKA_TOPIC=users.created", "KAFKA_GROUP_ID=lake", "KAFKA_BOOTSTRAP_SERVERS=b:9092"}, "", "KAFKA_TOPIC", "KAFKA_GROUP_ID")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"bootstrap.servers": "b:9092"}; !maps.Equal(got.Values, want) || len(got.Ignored) != 0 {
		t.Errorf("settings %v (ignored %v), want %v", got.Values, got.Ignored, want)
	}
}
