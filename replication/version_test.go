package replication

import (
	"slices"
	"testing"
)

func TestTheMajorVersionIsReadFromWhatTheServerReports(t *testing.T) {
	for in, want := range map[string]int{
		"15.18":                          15,
		"16.4 (Debian 16.4-1.pgdg120+1)": 16,
		"17.10":                          17,
		"18beta1":                        18,
		"18.4":                           18,
		"":                               0,
	} {
		if got := parseMajor(in); got != want {
			t.Errorf("parseMajor(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestTheOriginOptionIsAskedForFromPostgreSQL16On(t *testing.T) {
	for major, want := range map[int]bool{15: false, 16: true, 17: true, 18: true} {
		if got := slices.Contains(startOptions("users_pub", major), "origin 'any'"); got != want {
			t.Errorf("PostgreSQL %d: origin 'any' asked for = %v, want %v", major, got, want)
		}
	}
}
