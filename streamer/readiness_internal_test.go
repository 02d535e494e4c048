package streamer

import (
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
)

func TestADependencyNeverTriedReadsNotCheckedNotUnreachable(t *testing.T) {
	var never, failed, fine reachability
	failed.Store(false)
	fine.Store(true)
	var boolFalse, boolTrue atomic.Bool
	boolTrue.Store(true)
	tests := []struct {
		name string
		dep  interface{ Load() bool }
		want string
	}{
		{"never tried", &never, "not_checked"},
		{"tried and failed", &failed, "unreachable"},
		{"tried and answered", &fine, "ok"},
		{"a plain false bool", &boolFalse, "unreachable"},
		{"a plain true bool", &boolTrue, "ok"},
	}
	for _, tc := range tests {
		if got := state(tc.dep); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAStartingStreamerIsNotReadyAndHasCheckedNothingYet(t *testing.T) {
	s := New(Config{DatabaseURL: "postgres://127.0.0.1:1/x"}, zerolog.Nop(), nil)
	r := s.readiness()
	if r.Ready || r.Role != "starting" || r.Postgres != "not_checked" || r.Kafka != "not_checked" {
		t.Errorf("readiness of a new streamer = %+v", r)
	}
}
