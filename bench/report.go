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
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func (r report) markdown(versions string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nProduced by `make bench` on %s in %s. Machine: %s; %s; %s; broker: devkafka (franz-go kfake) on loopback. Streamer: idempotent producer, `acks=all`, lz4, one process.\n\n",
		r.started.UTC().Format("2006-01-02"), r.took.Round(time.Second), machine.Describe(), versions, runtime.Version())
	b.WriteString("Absolute figures on shared machines drift between runs, so each is printed beside its ceiling measured in the same run.\n\n")

	b.WriteString("## Catch-up throughput from a standing backlog\n\n")
	b.WriteString("The ceiling is `pg_recvlogical` (pgoutput, the same publication, the same WAL range, its own slot made at the same moment) writing to /dev/null. The streamer's time runs from process start until its slot confirms the end of the range, i.e. until Kafka acknowledged every event.\n\n")
	b.WriteString("The ceiling is read twice, before and after the streamer, each from its own slot; the faster run is shown. *Idle RSS* is 5 s after the backlog drained.\n\n")
	b.WriteString("| backlog | pg_recvlogical | streamer | ratio | streamer CPU per million events | peak RSS | idle RSS |\n|---|---|---|---|---|---|---|\n")
	for _, c := range r.catchUps {
		fmt.Fprintf(&b, "| %s | %.0f rows/s (%s) | %.0f events/s (%s) | %.2f | %.1f s | %s | %s |\n",
			c.name, c.ceilingRate(), c.ceiling.Round(10*time.Millisecond), c.streamerRate(), c.streamer.Round(10*time.Millisecond),
			c.streamerRate()/c.ceilingRate(), c.cpu.Seconds()*1e6/float64(c.rows), mib(c.peakRSS), mib(c.idleRSS))
	}

	fmt.Fprintf(&b, "\nA streamer started on an empty slot, idle for 5 s: RSS %s.\n", mib(r.freshIdleRSS))
	b.WriteString("\n## Commit-to-Kafka latency at a steady load\n\n")
	fmt.Fprintf(&b, "Single-row transactions over max(8, rate/150) connections for %s per rate. *Consumer* latency runs from the commit time (`ce_time`) to a consumer (fetch.wait.max.ms=1) receiving the event: exact per event, and an upper bound of the acknowledgement latency. *Ack* is the streamer's own commit-to-delivery-report histogram, as the bucket bound holding 50%% / 99%% of the events.\n\n", r.cfg.window)
	b.WriteString("| offered load | committed (achieved rate) | received | p50 | p95 | p99 | max | ack p50 | ack p99 | machine CPU busy |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range r.latencies {
		fmt.Fprintf(&b, "| %d inserts/s | %d (%.0f/s) | %d | %s | %s | %s | %s | %s | %s | %.0f%% |\n",
			l.rate, l.sent, float64(l.sent)/r.cfg.window.Seconds(), l.received, ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max), l.ackP50, l.ackP99, 100*l.cpuBusy)
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
	for _, c := range r.catchUps {
		if c.profileTop != "" {
			fmt.Fprintf(&b, "\n## CPU profile: 5 s of catching up %s, from its first event\n\n```\n%s```\n", c.name, c.profileTop)
		}
	}
	if findings, err := os.ReadFile(filepath.Join("bench", "findings.md")); err == nil {
		b.WriteString("\n")
		b.Write(findings)
	}
	return b.String()
}
