package main

import (
	"testing"
)

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
