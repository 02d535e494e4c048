package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// deliveries are the streamer's delivery modes, each measured on its own.
var deliveries = []string{"at-least-once", "exactly-once"}

// readerRun is one reader's pass over a WAL range.
type readerRun struct {
	reader       string
	wall         time.Duration // process start until the range is read (see catchUp)
	cpu          time.Duration // the reader's own CPU time
	walsenderCPU time.Duration // the CPU time of the walsender serving it
	busy         float64       // the machine's CPU busy fraction meanwhile
	stop         string        // pg_recvlogical: what showed it the end ("record" or "keepalive")
	peakRSS      int64         // streamer only
	idleRSS      int64
	profileTop   string
	firstEvent   time.Duration // streamer only: process start until Kafka held its first event
	readBack     int           // streamer only: records a read_committed consumer read from its topic afterwards
}

func (r readerRun) rate(rows int) float64 { return float64(rows) / r.wall.Seconds() }

// catchUpResult compares the streamer in each delivery mode with
// pg_recvlogical on one WAL range.
type catchUpResult struct {
	name      string
	rows      int
	ceilings  []readerRun // one per ceilingProtos, the faster of two runs
	streamers []readerRun // one per deliveries
	// Issue 13's target for the streamer's rate over the v1 ceiling, and
	// its aim (0: none).
	minRatio, aimRatio float64
}

// catchUp builds a backlog with load, then reads it with every reader, each
// from its own slot; all the slots are created in one statement before the
// load. pg_recvlogical reads it before and after the streamers (the faster
// run is kept), so neither side gets the only warm or the only cold pass.
func (b *bench) catchUp(ctx context.Context, name string, rows int, profile bool, load func(context.Context, int) error) (catchUpResult, error) {
	r := catchUpResult{name: name, rows: rows}
	var before, after, streamers, profiled, all []string
	for range ceilingProtos {
		before, after = append(before, b.name("ceiling")), append(after, b.name("ceiling"))
	}
	profile = profile && b.cfg.profDir != ""
	for range deliveries {
		streamers = append(streamers, b.name("streamer"))
		if profile {
			profiled = append(profiled, b.name("profiled"))
		}
	}
	all = append(append(append(append(all, before...), after...), streamers...), profiled...)
	if err := b.createSlots(ctx, all); err != nil {
		return r, err
	}
	for _, s := range all {
		defer b.dropSlot(context.Background(), s)
	}
	if err := load(ctx, rows); err != nil {
		return r, fmt.Errorf("load: %w", err)
	}
	end, err := b.rangeEnd(ctx)
	if err != nil {
		return r, err
	}
	firsts := make([]readerRun, len(ceilingProtos))
	for i, p := range ceilingProtos {
		if firsts[i], err = b.recvlogical(ctx, before[i], end, p); err != nil {
			return r, err
		}
	}
	for i, mode := range deliveries {
		s, err := b.streamerCatchUp(ctx, streamers[i], mode, end, rows, false)
		if err != nil {
			return r, fmt.Errorf("streamer, %s: %w", mode, err)
		}
		r.streamers = append(r.streamers, s)
	}
	// Profilers cost the profiled process CPU: the profiles come from a
	// pass of their own, whose figures are not reported.
	for i, mode := range deliveries[:len(profiled)] {
		s, err := b.streamerCatchUp(ctx, profiled[i], mode, end, rows, true)
		if err != nil {
			return r, fmt.Errorf("profiled streamer, %s: %w", mode, err)
		}
		r.streamers[i].profileTop = s.profileTop
	}
	for i, p := range ceilingProtos {
		again, err := b.recvlogical(ctx, after[i], end, p)
		if err != nil {
			return r, err
		}
		r.ceilings = append(r.ceilings, faster(firsts[i], again))
	}
	return r, nil
}

// streamerCatchUp runs the streamer in mode on slot from process start until
// the slot confirms end. The streamer confirms a transaction only once Kafka
// holds all its events: in at-least-once mode once each was acknowledged, in
// exactly-once mode once the Kafka transaction holding its last event
// committed, so a read_committed consumer can read them all.
func (b *bench) streamerCatchUp(ctx context.Context, slot, mode string, end pglogrepl.LSN, rows int, profile bool) (readerRun, error) {
	r := readerRun{reader: "streamer, " + mode}
	extra := []string{"DELIVERY=" + mode}
	if profile {
		extra = append(extra, "PPROF=true")
	}
	busy0, total0 := cpuTicks()
	started := time.Now()
	p, err := b.startStreamer(slot, topicFor(slot), extra...)
	if err != nil {
		return r, err
	}
	ws := b.watchWalsender(ctx, slot)
	profDone := make(chan string, 1)
	if profile {
		go func() { profDone <- b.profile(p.port, p.cmd.Process.Pid, mode) }()
	} else {
		profDone <- ""
	}
	for {
		// Only until the first event: scraping the metrics costs the
		// streamer CPU.
		if r.firstEvent == 0 && producedEvents(p.port) > 0 {
			r.firstEvent = time.Since(started)
		}
		c, err := b.confirmed(ctx, slot)
		if err != nil {
			ws.stop()
			_ = p.stop()
			return r, err
		}
		if c >= end {
			break
		}
		if time.Since(started) > 10*time.Minute {
			ws.stop()
			_ = p.stop()
			return r, fmt.Errorf("streamer did not catch up in 10 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.wall = time.Since(started)
	r.cpu, r.peakRSS, r.walsenderCPU = p.cpu(), p.status("VmHWM"), ws.stop()
	r.busy = busySince(busy0, total0)
	r.profileTop = <-profDone
	// Every event counted once by the streamer itself: a confirmed slot with
	// fewer events would mean the end condition is wrong.
	if n := producedEvents(p.port); n < float64(rows) {
		_ = p.stop()
		return r, fmt.Errorf("slot confirmed the range end after %.0f of %d events", n, rows)
	}
	time.Sleep(5 * time.Second) // idle: nothing new to read
	r.idleRSS = p.status("VmRSS")
	if err := p.stop(); err != nil {
		return r, err
	}
	if r.readBack, err = readBack(ctx, b.cfg.kafka, topicFor(slot), rows, time.Second); err != nil {
		return r, err
	}
	if r.readBack < rows {
		return r, fmt.Errorf("slot confirmed the range end, but a read_committed consumer read only %d of %d events", r.readBack, rows)
	}
	return r, nil
}

// profile records a CPU profile of the streamer's first seconds of catch-up
// and a heap profile, and returns pprof's top entries; with perf installed,
// a whole-process profile of the same seconds follows them.
func (b *bench) profile(port, pid int, mode string) string {
	base := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
	for i := 0; i < 100; i++ { // the metrics server comes up with the process
		if resp, err := http.Get(base); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Profile the streaming itself, not the wait while PostgreSQL decodes a
	// big transaction before sending its first change.
	for i := 0; i < 6000 && producedEvents(port) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	whole := make(chan string, 1)
	go func() { whole <- b.perfProfile(pid, mode) }()
	cpuPath := filepath.Join(b.cfg.profDir, "streamer-cpu-"+mode+".pprof")
	if err := fetch(base+"profile?seconds=5", cpuPath); err != nil {
		return "profile failed: " + err.Error()
	}
	_ = fetch(base+"heap", filepath.Join(b.cfg.profDir, "streamer-heap-"+mode+".pprof"))
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", filepath.Join(b.cfg.bin, "streamer"), cpuPath).Output()
	if err != nil {
		return "pprof failed: " + err.Error()
	}
	return string(out) + <-whole
}

// perfProfile samples every thread of the process for 5 s with perf, when
// it is installed. Go's profiler sees only Go code: the time librdkafka
// spends in C, on its own threads, and in malloc shows up there as
// runtime.cgocall or not at all.
func (b *bench) perfProfile(pid int, mode string) string {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return ""
	}
	data := filepath.Join(b.cfg.profDir, "streamer-perf-"+mode+".data")
	if out, err := exec.Command(perf, "record", "-F", "999", "-o", data, "-p", strconv.Itoa(pid), "--", "sleep", "5").CombinedOutput(); err != nil {
		return fmt.Sprintf("\nperf record failed: %v\n%s", err, out)
	}
	report := func(sort string, lines int) string {
		out, err := exec.Command(perf, "report", "-i", data, "--no-children", "--sort", sort, "-g", "none", "-q", "--stdio").Output()
		if err != nil {
			return "perf report failed: " + err.Error() + "\n"
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) != "" && len(keep) < lines {
				keep = append(keep, strings.TrimRight(l, " "))
			}
		}
		return strings.Join(keep, "\n") + "\n"
	}
	return "\nThe same 5 s sampled by perf (999 Hz), every thread: by thread and library\n\n" + report("comm,dso", 10) +
		"\nand the top symbols\n\n" + report("comm,sym", 25)
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func (b *bench) insertBig(ctx context.Context, rows int) error {
	tag := b.name("big")
	_, err := b.pool.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version)
		SELECT $1 || '-' || g, 'BE', '2024-01-02 03:04:05', 'bench' FROM generate_series(1, $2) g`, tag, rows)
	return err
}

// insertSingles commits rows one-row transactions with pgbench, over 16
// clients so that durable commits share their WAL flushes and the backlog
// builds in well under a minute.
func (b *bench) insertSingles(ctx context.Context, rows int) error {
	const clients = 16
	if rows%clients != 0 {
		return fmt.Errorf("%d single-row transactions: want a multiple of %d, one share per pgbench client", rows, clients)
	}
	script, err := os.CreateTemp("", "bench-*.sql")
	if err != nil {
		return err
	}
	defer os.Remove(script.Name())
	fmt.Fprintln(script, "INSERT INTO users (username, country_code, created_at, api_version) VALUES ('single-' || gen_random_uuid(), 'NL', now(), 'bench');")
	script.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.pgBin, "pgbench"), "-n", "-c", fmt.Sprint(clients), "-j", "2",
		"-t", fmt.Sprint(rows/clients), "-f", script.Name(), b.dsn)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	return nil
}

// producedEvents reads userstream_streamer_events_produced_total.
func producedEvents(port int) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "userstream_streamer_events_produced_total "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n
		}
	}
	return 0
}

// freshIdleRSS is the resident size of a streamer that started on an empty
// slot and has had nothing to do for 5 s.
func (b *bench) freshIdleRSS(ctx context.Context) (int64, error) {
	slot := b.name("idle")
	if err := b.createSlot(ctx, slot); err != nil {
		return 0, err
	}
	defer b.dropSlot(context.Background(), slot)
	p, err := b.startStreamer(slot, topicFor(slot))
	if err != nil {
		return 0, err
	}
	if err := waitActive(p.port); err != nil {
		_ = p.stop()
		return 0, err
	}
	time.Sleep(5 * time.Second)
	rss := p.status("VmRSS")
	return rss, p.stop()
}
