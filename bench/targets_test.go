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
			report{latencies: []latencyResult{{mode: "exactly-once", rate: 1000, sent: 10, received: 9, p99: time.Millisecond, took: time.Second}}},
			"| p99 commit→consumer at 1,000/s, exactly-once | ≤ 25.0 ms | 1.0 ms (9 of 10 received) | missed |"},
		{"a p99 within 25 ms with every event received is met",
			report{latencies: []latencyResult{{mode: "at-least-once", rate: 1000, sent: 10, received: 10, p99: 20 * time.Millisecond, took: time.Second}}},
			"| p99 commit→consumer at 1,000/s, at-least-once | ≤ 25.0 ms | 20.0 ms (10 of 10 received) | met |"},
		{"at 5,000/s the p99 bound is 50 ms",
			report{latencies: []latencyResult{{mode: "exactly-once", rate: 5000, sent: 150000, received: 150000, p99: 40 * time.Millisecond, took: 30 * time.Second}}},
			"| p99 commit→consumer at 5,000/s, exactly-once | ≤ 50.0 ms | 40.0 ms (150000 of 150000 received) | met |"},
		{"an inserter that fell behind is reported as a miss",
			report{latencies: []latencyResult{{mode: "exactly-once", rate: 5000, sent: 63000, received: 63000, took: 30 * time.Second}}},
			"| insert rate offered at 5,000/s, exactly-once | ≥ 95% of 5000/s | 2100/s | missed |"},
		{"a streamer over 0.05 s of CPU per 1,000 events misses its target",
			report{latencies: []latencyResult{{mode: "at-least-once", rate: 1000, sent: 30000, received: 30000, took: 30 * time.Second,
				cpu: map[string]time.Duration{"streamer": 11700 * time.Millisecond, "archiver": 600 * time.Millisecond}}}},
			"| streamer CPU per 1,000 events at 1,000/s, at-least-once | ≤ 0.05 s | 0.390 s | missed |"},
		{"an archiver within 0.03 s of CPU per 1,000 events meets its target",
			report{latencies: []latencyResult{{mode: "at-least-once", rate: 1000, sent: 30000, received: 30000, took: 30 * time.Second,
				cpu: map[string]time.Duration{"archiver": 600 * time.Millisecond}}}},
			"| archiver CPU per 1,000 events at 1,000/s, at-least-once | ≤ 0.03 s | 0.020 s | met |"},
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
