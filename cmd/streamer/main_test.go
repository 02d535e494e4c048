package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKafkaSettingsComeFromKAFKAVariablesAndThePropertiesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(file, []byte("# managed Kafka\nsasl.password = from-file\n\nssl.ca.location=/etc/ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092",
		"KAFKA_SECURITY_PROTOCOL=SASL_SSL",
		"KAFKA_SASL_MECHANISMS=PLAIN",
		"KAFKA_SASL_PASSWORD=from-env",
		"KAFKA_TOPIC=users.created",
		"KAFKA_TOPIC_PARTITIONS=12",
		"KAFKA_PORT=9092",
		"PATH=/bin",
	}
	got, err := kafkaProperties(env, file)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"bootstrap.servers": "b1:9092,b2:9092",
		"security.protocol": "SASL_SSL",
		"sasl.mechanisms":   "PLAIN",
		"sasl.password":     "from-file", // the file is read after the variables
		"ssl.ca.location":   "/etc/ca.pem",
	}
	if len(got) != len(want) {
		t.Errorf("got %d settings %v, want %d (the streamer's own KAFKA_ variables are not librdkafka's)", len(got), keys(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestAPropertiesFileLineWithoutEqualsIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.properties")
	if err := os.WriteFile(file, []byte("sasl.username\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kafkaProperties(nil, file); err == nil {
		t.Fatal("want an error naming the line")
	}
}

func TestStartLSNMustParse(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1/db")
	if _, err := parseConfig("run", []string{"--start-lsn", "not-an-lsn"}); err == nil {
		t.Fatal("want an error for a malformed START_LSN")
	}
	c, err := parseConfig("run", []string{"--start-lsn", "0/16B3748"})
	if err != nil || c.startLSN.String() != "0/16B3748" {
		t.Fatalf("start LSN %s, err %v", c.startLSN, err)
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
