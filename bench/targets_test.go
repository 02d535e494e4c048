package main

import (
	"strings"
	"testing"
	"time"
)

func TestTargetsAreJudgedOnTheFiguresOfTheSameRun(t *testing.T) {
	big := func(streamer time.Duration) catchUpResult {
		return catchUpResult{
			name: "one transaction of 1000 inserts", rows: 1000, minRatio: 0.6, aimRatio: 0.8,
			ceilings:  []readerRun{{reader: "pg_recvlogical, proto v1", wall: time.Second}},
			streamers: []readerRun{{reader: "streamer, exactly-once", wall: streamer, cpu: time.Millisecond, peakRSS: 64 << 20}},
		}
	}
	tests := []struct {
		name string
		rep  report
		want string // the line of the figure, as printed
	}{
		{"a streamer at 0.7 of the ceiling meets the 0.6 target",
			report{catchUps: []catchUpResult{big(time.Second * 10 / 7)}},
			"| catch-up, one transaction of 1000 inserts, streamer, exactly-once | ≥ 0.6× pg_recvlogical v1 (aim 0.8×) | 0.70× (700 events/s against 1000 rows/s) | met |"},
		{"a streamer at 0.5 of the ceiling misses it",
			report{catchUps: []catchUpResult{big(2 * time.Second)}},
			"| catch-up, one transaction of 1000 inserts, streamer, exactly-once | ≥ 0.6× pg_recvlogical v1 (aim 0.8×) | 0.50× (500 events/s against 1000 rows/s) | missed |"},
		{"a low p99 with events missing is a miss",
			report{latencies: []latencyResult{{mode: "exactly-once", rate: 1000, sent: 10, received: 9, p99: time.Millisecond}}},
			"| p99 commit→consumer at 1,000 inserts/s, exactly-once | ≤ 25 ms | 1.0 ms (9 of 10 received) | missed |"},
		{"a p99 within 25 ms with every event received is met",
			report{latencies: []latencyResult{{mode: "at-least-once", rate: 1000, sent: 10, received: 10, p99: 20 * time.Millisecond}}},
			"| p99 commit→consumer at 1,000 inserts/s, at-least-once | ≤ 25 ms | 20.0 ms (10 of 10 received) | met |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.rep.targetsMarkdown(&b)
			if got := b.String(); !strings.Contains(got, tt.want+"\n") {
				t.Errorf("want the line\n%s\nin\n%s", tt.want, got)
			}
		})
	}
}

func TestAStreamerAheadOfItsCeilingOnOneTransactionIsFlagged(t *testing.T) {
	c := catchUpResult{
		name: "one transaction of 1000 inserts", rows: 1000, minRatio: 0.6, aimRatio: 0.8,
		ceilings:  []readerRun{{reader: "pg_recvlogical, proto v1", wall: 2 * time.Second, stop: "record"}},
		streamers: []readerRun{{reader: "streamer, at-least-once", wall: time.Second, peakRSS: 1}},
	}
	var b strings.Builder
	report{catchUps: []catchUpResult{c}}.catchUpMarkdown(&b)
	if !strings.Contains(b.String(), "**The ceiling is suspect:** streamer, at-least-once outran pg_recvlogical v1") {
		t.Errorf("no warning in\n%s", b.String())
	}
	c.streamers[0].wall = 3 * time.Second
	b.Reset()
	report{catchUps: []catchUpResult{c}}.catchUpMarkdown(&b)
	if strings.Contains(b.String(), "suspect") {
		t.Errorf("a warning for a slower streamer in\n%s", b.String())
	}
}
