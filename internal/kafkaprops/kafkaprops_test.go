package kafkaprops

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSettingsComeFromKAFKAVariablesThenThePropertiesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(file, []byte("# managed Kafka\nsasl.password = from-file\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"KAFKA_BOOTSTRAP_SERVERS=b:9092", "KAFKA_SASL_MECHANISMS=PLAIN", "KAFKA_SASL_PASSWORD=from-env",
		"KAFKA_GROUP_ID=g", "KAFKA_TOPIC=t", "KAFKA_PORT=9092", "PATH=/bin"}
	got, err := Gather(env, file, "KAFKA_GROUP_ID", "KAFKA_TOPIC")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bootstrap.servers": "b:9092", "sasl.mechanisms": "PLAIN", "sasl.password": "from-file"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestAPropertiesLineWithoutEqualsIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.properties")
	if err := os.WriteFile(file, []byte("sasl.username\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Gather(nil, file); err == nil {
		t.Fatal("want an error naming the line")
	}
}
