package replication

import (
	"testing"
	"time"
)

func TestParseSettingReadsTimeSettingsAsShowPrintsThem(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"60s", time.Minute},
		{"1min", time.Minute},
		{"500ms", 500 * time.Millisecond},
		{"2h", 2 * time.Hour},
		{"1d", 24 * time.Hour},
		{"0", 0},
		{"1500", 1500 * time.Millisecond},
	}
	for _, tc := range tests {
		got, err := ParseSetting(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSetting(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "s", "10 parsecs", "-1s"} {
		if _, err := ParseSetting(bad); err == nil {
			t.Errorf("ParseSetting(%q) accepted", bad)
		}
	}
}
