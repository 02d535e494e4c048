package main

import (
	"strings"
	"testing"
	"time"
)

func TestRollLimitsComeFromTheEnvironmentAndMustBePositive(t *testing.T) {
	t.Setenv("ROLL_AGE", "10s")
	t.Setenv("ROLL_EVENTS", "500")
	c, err := parseConfig("run", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.roll.MaxAge != 10*time.Second || c.roll.MaxEvents != 500 || c.roll.MaxBytes != 128<<20 {
		t.Errorf("roll %+v", c.roll)
	}
	if _, err := parseConfig("run", []string{"--roll-bytes", "0"}); err == nil {
		t.Error("ROLL_BYTES=0: want an error")
	}
}

func TestKafkaSettingsSkipTheArchiversOwnVariablesAndKubernetesServiceLinks(t *testing.T) {
	got, err := kafkaProperties([]string{"KAFKA_BOOTSTRAP_SERVERS=b:9092", "KAFKA_GROUP_ID=g", "KAFKA_TOPIC=t", "KAFKA_SASL_MECHANISMS=PLAIN",
		"KAFKA_SERVICE_HOST=10.0.0.1", "KAFKA_PORT=tcp://10.0.0.1:9092", "KAFKA_PORT_9092_TCP=tcp://10.0.0.1:9092", "KAFKA_PROPERTY_CLIENT_ID=archiver"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["bootstrap.servers"] != "b:9092" || got["sasl.mechanisms"] != "PLAIN" || got["client.id"] != "archiver" {
		t.Errorf("properties %v", got)
	}
}

func TestAnUnknownKafkaPropertyStopsTheArchiverNamingItsVariable(t *testing.T) {
	_, err := kafkaProperties([]string{"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1", "KAFKA_PROPERTY_FETCH_MAX_BYTS=1"}, "")
	if err == nil || !strings.Contains(err.Error(), `"fetch.max.byts" (set by KAFKA_PROPERTY_FETCH_MAX_BYTS)`) {
		t.Fatalf("err = %v, want one naming KAFKA_PROPERTY_FETCH_MAX_BYTS", err)
	}
}

func TestALakeURLIsLoggedWithoutCredentialsOrQuery(t *testing.T) {
	got := redactURL("s3://key:secret@bucket/prefix?region=eu-west-1&awssdk=v2")
	if strings.Contains(got, "secret") || strings.Contains(got, "region") || got != "s3://bucket/prefix" {
		t.Errorf("redacted %q", got)
	}
}
