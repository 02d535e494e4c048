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
	b.WriteString("\n## Commit-to-Kafka latency at a steady load\n\n")
	fmt.Fprintf(&b, "Single-row transactions over max(8, rate/150) connections for %s per rate, one streamer per delivery mode. *Consumer* latency runs from the commit time (`ce_time`) to a consumer receiving the event: exact per event, and an upper bound of the acknowledgement latency. The consumer is librdkafka with `isolation.level=read_committed` set explicitly in both modes and fetch.wait.max.ms=1: in exactly-once mode it sees an event only once the Kafka transaction holding it committed (the streamer commits one 10 ms after its first record, `TRANSACTION_INTERVAL`, or at 10,000 records); in at-least-once mode there are no transactions and the setting changes nothing. *Ack* is the streamer's own commit-to-acknowledgement histogram (at-least-once: the delivery report; exactly-once: the Kafka commit), as the bucket bound holding 50%% / 99%% of the events.\n\n", r.cfg.window)
	b.WriteString("| delivery | offered load | committed (achieved rate) | received | p50 | p95 | p99 | max | ack p50 | ack p99 | machine CPU busy |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range r.latencies {
		fmt.Fprintf(&b, "| %s | %d inserts/s | %d (%.0f/s) | %d | %s | %s | %s | %s | %s | %s | %.0f%% |\n",
			l.mode, l.rate, l.sent, float64(l.sent)/r.cfg.window.Seconds(), l.received, ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max), l.ackP50, l.ackP99, 100*l.cpuBusy)
	}

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
