package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// catchUpMarkdown writes the catch-up section: every reader of each backlog,
// pg_recvlogical's ceilings first.
func (r report) catchUpMarkdown(b *strings.Builder) {
	b.WriteString("## Catch-up throughput from a standing backlog\n\n")
	b.WriteString("Every reader reads the same WAL range, each from its own slot; all the slots are created in one statement before the load. ")
	b.WriteString("The ceiling is `pg_recvlogical` (pgoutput, the same publication) writing to /dev/null without fsync, timed as its own process: from its start until it exits at `--endpos`. ")
	b.WriteString("It is read with protocol v1, what the streamer speaks, and with protocol v2 and `streaming=on`, which sends a large transaction's changes while PostgreSQL is still decoding it. ")
	b.WriteString("Each ceiling is read twice, before and after the streamers, and the faster run is shown. ")
	b.WriteString("The streamer's time runs from process start until its slot confirms the end of the range, i.e. until Kafka holds every event: acknowledged in at-least-once mode, in committed Kafka transactions in exactly-once mode (the slot is acknowledged only after the commit). ")
	b.WriteString("*Ratio* is each reader's rate over the v1 ceiling's. *CPU* is the reader's own CPU time (the exited process's accounting for pg_recvlogical, /proc for the streamer), *walsender CPU* that of the PostgreSQL process serving its slot (read from /proc every 5 ms while it runs). *Machine CPU busy* covers both cores over the reader's run, other work included. *Idle RSS* is 5 s after the backlog drained.\n\n")
	b.WriteString("| backlog | reader | time | rate | ratio | CPU per million rows | walsender CPU | machine CPU busy | peak RSS | idle RSS |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var keepalive []string
	for _, c := range r.catchUps {
		if len(c.ceilings) == 0 {
			continue
		}
		v1 := c.ceilings[0].rate(c.rows)
		for _, run := range append(append([]readerRun(nil), c.ceilings...), c.streamers...) {
			unit, rss, idle := "rows/s", "–", "–"
			if run.peakRSS > 0 {
				unit, rss, idle = "events/s", mib(run.peakRSS), mib(run.idleRSS)
			}
			if run.stop == "keepalive" {
				keepalive = append(keepalive, fmt.Sprintf("%s (%s)", run.reader, c.name))
			}
			perM := 1e6 / float64(c.rows)
			fmt.Fprintf(b, "| %s | %s | %s | %.0f %s | %.2f | %.2f s | %.2f s (%.2f s per million) | %.0f%% | %s | %s |\n",
				c.name, run.reader, run.wall.Round(10*time.Millisecond), run.rate(c.rows), unit, run.rate(c.rows)/v1,
				run.cpu.Seconds()*perM, run.walsenderCPU.Seconds(), run.walsenderCPU.Seconds()*perM, 100*run.busy, rss, idle)
		}
	}
	var firsts []string
	for _, c := range r.catchUps {
		for _, s := range c.streamers {
			firsts = append(firsts, fmt.Sprintf("%s, %s: %s", c.name, s.reader, s.firstEvent.Round(10*time.Millisecond)))
		}
	}
	if len(firsts) > 0 {
		fmt.Fprintf(b, "\nFrom process start until Kafka held the streamer's first event (start-up, then PostgreSQL decoding a transaction up to its commit before protocol v1 sends any of it; read every 10 ms): %s.\n", strings.Join(firsts, "; "))
	}
	var readBack []string
	for _, c := range r.catchUps {
		for _, s := range c.streamers {
			readBack = append(readBack, fmt.Sprintf("%s, %s: %d of %d", c.name, s.reader, s.readBack, c.rows))
		}
	}
	if len(readBack) > 0 {
		fmt.Fprintf(b, "\nAfter each streamer run, a read_committed consumer read its topic back from the start (the bench fails when it finds fewer events than rows; more would be duplicates): %s.\n", strings.Join(readBack, "; "))
	}
	for _, c := range r.catchUps {
		if c.aimRatio == 0 || len(c.ceilings) == 0 {
			continue
		}
		for _, s := range c.streamers {
			// Nothing reads a large transaction faster than PostgreSQL
			// decodes it: a streamer ahead of pg_recvlogical means a broken
			// ceiling, not a fast streamer.
			if s.rate(c.rows) >= c.ceilings[0].rate(c.rows) {
				fmt.Fprintf(b, "\n**The ceiling is suspect:** %s outran pg_recvlogical v1 on %s.\n", s.reader, c.name)
			}
		}
	}
	if len(keepalive) == 0 {
		b.WriteString("\nEvery pg_recvlogical run above ended on a WAL record at or past `--endpos`, none waited for a keepalive (see *The ceiling* below).\n")
	} else {
		fmt.Fprintf(b, "\nThese pg_recvlogical runs ended on a keepalive rather than a WAL record, so their time may include a wait for the walsender: %s.\n", strings.Join(keepalive, "; "))
	}
}

// loadAverage is the machine's 1-minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
