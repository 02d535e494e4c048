package main

import (
	"testing"
	"time"

	"github.com/userstream/userstream/streamer"
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

// READ_LINGER=0 turns the linger off rather than taking the default, and
// an unset one takes the default; a negative or over-long one is refused.
func TestReadLingerZeroMeansOffAndBadValuesAreRefused(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1/db")
	for _, tc := range []struct {
		args []string
		want time.Duration // the streamer's ReadLinger; negative is off
		bad  bool
	}{
		{nil, streamer.DefaultReadLinger, false},
		{[]string{"--read-linger", "0"}, -1, false},
		{[]string{"--read-linger", "2ms"}, 2 * time.Millisecond, false},
		{[]string{"--read-linger", "-1ms"}, 0, true},
		{[]string{"--read-linger", "2s"}, 0, true},
	} {
		c, err := parseConfig("run", tc.args)
		if tc.bad {
			if err == nil {
				t.Errorf("%v: want an error", tc.args)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		got := c.streamerConfig(kafkaSettings{}).ReadLinger
		if (tc.want < 0) != (got < 0) || (tc.want >= 0 && got != tc.want) {
			t.Errorf("%v: ReadLinger = %s, want %s", tc.args, got, tc.want)
		}
	}
}
