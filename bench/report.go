package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/userstream/userstream/internal/machine"
)

type report struct {
	cfg          config
	started      time.Time
	took         time.Duration
	catchUps     []catchUpResult
	freshIdleRSS int64
	latencies    []latencyResult
	apis         []apiResult
	archive      archiveResult
	loadStart    string // /proc/loadavg's 1-minute figure
	loadEnd      string
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func (r report) markdown(versions string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nProduced by `make bench` on %s in %s. Machine: %s; %s; %s; broker: devkafka (franz-go kfake) on loopback. Streamer: idempotent producer, `acks=all`, lz4, one process; `DELIVERY=at-least-once` and `DELIVERY=exactly-once` each measured.\n\n",
		r.started.UTC().Format("2006-01-02"), r.took.Round(time.Second), machine.Describe(), versions, runtime.Version())
	fmt.Fprintf(&b, "Load average (1 min) of the 2-core machine when the measurements started and ended: %s and %s. The machine is shared: *machine CPU busy* beside each figure covers both cores, other work included.\n\n", r.loadStart, r.loadEnd)
	b.WriteString("Absolute figures on shared machines drift between runs, so each is printed beside its ceiling measured in the same run.\n\n")

	r.catchUpMarkdown(&b)
	fmt.Fprintf(&b, "\nA streamer started on an empty slot, idle for 5 s: RSS %s.\n", mib(r.freshIdleRSS))
	r.steadyMarkdown(&b)
	if r.archive.events > 0 {
		b.WriteString(r.archive.markdown())
	}
	b.WriteString("\n## The users API\n\n")
	fmt.Fprintf(&b, "wrk with closed-loop connections (2 threads), each request a distinct valid user (bench/users.lua), for %s per row; wrk runs on the same 2 cores, as pgbench does. The ceiling is pgbench running the same single-row INSERT … RETURNING at the same concurrency against the same PostgreSQL.\n\n", r.cfg.window)
	b.WriteString("| clients | created/s | p50 | p99 | errors | pgbench INSERTs/s | ratio |\n|---|---|---|---|---|---|---|\n")
	for _, a := range r.apis {
		fmt.Fprintf(&b, "| %d | %.0f | %s | %s | %d | %.0f | %.2f |\n", a.clients, a.rate, ms(a.p50), ms(a.p99), a.errors, a.pgbenchTPS, a.rate/a.pgbenchTPS)
	}
	r.targetsMarkdown(&b)
	for _, c := range r.catchUps {
		for _, s := range c.streamers {
			if s.profileTop != "" {
				fmt.Fprintf(&b, "\n## CPU profile: %s, 5 s of catching up %s, from its first event (a pass of its own, not the timed one)\n\n```\n%s```\n", s.reader, c.name, s.profileTop)
			}
		}
	}
	if findings, err := os.ReadFile(filepath.Join("bench", "findings.md")); err == nil {
		b.WriteString("\n")
		b.Write(findings)
	}
	return b.String()
}

// steadyMarkdown is the steady-load section: latency and CPU per event of
// each process with the whole stack running.
func (r report) steadyMarkdown(b *strings.Builder) {
	if len(r.latencies) == 0 {
		return
	}
	b.WriteString("\n## Steady load: the whole stack, latency and cost per event\n\n")
	fmt.Fprintf(b, "The stack as `make up` runs it: one streamer per delivery mode, an archiver writing a `file://` lake from the same topic (its own group, default roll limits), the broker and PostgreSQL, all on the same 2 cores. The inserter commits single-row transactions at a fixed rate over max(8, rate/150) connections for %s per rate; one that falls behind does not make up missed inserts, so *achieved* is what was really offered. *Latency* runs from the commit time (`ce_time`) to an independent consumer receiving the event (librdkafka, `isolation.level=read_committed` in both modes, a fetch that waits for data): exact per event, and an upper bound of the acknowledgement latency. In exactly-once mode a record is readable once the Kafka transaction holding it committed (`TRANSACTION_INTERVAL`, default 10 ms, after its first record). *Ack* is the streamer's own commit-to-acknowledgement histogram, as the bucket bound holding 50%% / 99%% of the events. *Status updates / 1k* are the streamer's standby status updates to PostgreSQL per 1,000 events. *CPU per 1,000 events* is each process's user+system time from /proc over the phase (the inserts and the drain after them), divided by the events: the walsender is the PostgreSQL process serving the streamer's slot; the broker is devkafka, which also serves the archiver and the consumer. The last row is exactly-once with `TRANSACTION_INTERVAL=50ms` instead of 10 ms: what a longer Kafka transaction saves per event, and what it costs in latency (shown, not judged).\n\n", r.cfg.window)
	b.WriteString("| delivery | offered | achieved | received | p50 | p95 | p99 | max | ack p50 | ack p99 | streamer CPU / 1k | archiver CPU / 1k | broker CPU / 1k | walsender CPU / 1k | status updates / 1k | machine CPU busy |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range r.latencies {
		mode := l.mode
		if l.variant != "" {
			mode += ", " + l.variant
		}
		fmt.Fprintf(b, "| %s | %d/s | %.0f/s | %d of %d | %s | %s | %s | %s | %s | %s |", mode, l.rate, l.achieved(), l.received, l.sent,
			ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max), l.ackP50, l.ackP99)
		for _, proc := range costed {
			if v, ok := l.perThousand(proc); ok {
				fmt.Fprintf(b, " %.3f s |", v)
			} else {
				b.WriteString(" – |")
			}
		}
		fmt.Fprintf(b, " %.0f | %.0f%% |\n", l.statusUpdates*1000/float64(max(l.sent, 1)), 100*l.cpuBusy)
	}
}
