package main

import (
	"fmt"
	"strings"
	"time"
)

// target is one of issue 13's targets, judged on this run's figures.
type target struct {
	figure, want, got string
	met               bool
}

// targetsMarkdown judges this run against issue 13's targets, in both
// delivery modes, with each figure beside the ceiling of the same run.
func (r report) targetsMarkdown(b *strings.Builder) {
	var ts []target
	for _, c := range r.catchUps {
		if len(c.ceilings) == 0 {
			continue
		}
		v1 := c.ceilings[0].rate(c.rows)
		for _, s := range c.streamers {
			ratio := s.rate(c.rows) / v1
			want := fmt.Sprintf("≥ %.1f× pg_recvlogical v1", c.minRatio)
			if c.aimRatio > 0 {
				want += fmt.Sprintf(" (aim %.1f×)", c.aimRatio)
			}
			ts = append(ts, target{fmt.Sprintf("catch-up, %s, %s", c.name, s.reader), want,
				fmt.Sprintf("%.2f× (%.0f events/s against %.0f rows/s)", ratio, s.rate(c.rows), v1), ratio >= c.minRatio})
			perM := s.cpu.Seconds() * 1e6 / float64(c.rows)
			ts = append(ts, target{fmt.Sprintf("CPU per million events, %s, %s", c.name, s.reader), "≤ 6 s",
				fmt.Sprintf("%.1f s", perM), perM <= 6})
			ts = append(ts, target{fmt.Sprintf("peak RSS, %s, %s", c.name, s.reader), "≤ 128 MiB (aim 64 MiB)",
				mib(s.peakRSS), s.peakRSS <= 128<<20})
		}
	}
	for _, l := range r.latencies {
		ts = append(ts, l.targets()...)
	}
	for _, a := range r.apis {
		ratio := a.rate / a.pgbenchTPS
		ts = append(ts, target{fmt.Sprintf("API at %d clients", a.clients), "≥ 0.5× pgbench, p99 ≤ 25 ms, 0 errors",
			fmt.Sprintf("%.2f×, p99 %s, %d errors", ratio, ms(a.p99), a.errors), ratio >= 0.5 && a.p99 <= 25*time.Millisecond && a.errors == 0})
	}
	if len(ts) == 0 {
		return
	}
	b.WriteString("\n## The targets in this run\n\n| figure | target | this run | |\n|---|---|---|---|\n")
	for _, t := range ts {
		verdict := "missed"
		if t.met {
			verdict = "met"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.figure, t.want, t.got, verdict)
	}
}

// The steady-load targets (issue 23): p99 by rate, CPU per 1,000 events at
// 1,000/s, and the offered rate reached.
var (
	p99Within  = map[int]time.Duration{1000: 25 * time.Millisecond, 5000: 50 * time.Millisecond}
	cpuWithin  = map[string]float64{"streamer": 0.05, "archiver": 0.03}
	offeredMin = 0.95 // of the asked rate
)

// targets judges one steady-load phase.
func (l latencyResult) targets() []target {
	if l.variant != "" {
		return nil // a trade shown beside the defaults, not what the targets are about
	}
	var ts []target
	at := fmt.Sprintf("%s/s, %s", thousands(l.rate), l.mode)
	if bound, ok := p99Within[l.rate]; ok {
		ts = append(ts, target{"p99 commit→consumer at " + at, "≤ " + ms(bound),
			fmt.Sprintf("%s (%d of %d received)", ms(l.p99), l.received, l.sent), l.p99 <= bound && l.received == l.sent})
	}
	ts = append(ts, target{"insert rate offered at " + at, fmt.Sprintf("≥ %.0f%% of %d/s", 100*offeredMin, l.rate),
		fmt.Sprintf("%.0f/s", l.achieved()), l.achieved() >= offeredMin*float64(l.rate)})
	if l.rate != 1000 {
		return ts
	}
	for _, proc := range costed {
		bound, ok := cpuWithin[proc]
		v, measured := l.perThousand(proc)
		if !ok || !measured {
			continue
		}
		ts = append(ts, target{fmt.Sprintf("%s CPU per 1,000 events at %s", proc, at), fmt.Sprintf("≤ %.2f s", bound),
			fmt.Sprintf("%.3f s", v), v <= bound})
	}
	return ts
}

// thousands writes n with a thousands separator: 5,000.
func thousands(n int) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%s,%03d", thousands(n/1000), n%1000)
}
