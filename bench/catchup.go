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

// catchUpResult compares the streamer with pg_recvlogical on one WAL range.
type catchUpResult struct {
	name       string
	rows       int
	ceiling    time.Duration // pg_recvlogical, pgoutput, same publication and range
	streamer   time.Duration // start of the process until the slot confirms the range's end
	cpu        time.Duration
	peakRSS    int64
	idleRSS    int64
	profileTop string
}

func (r catchUpResult) ceilingRate() float64  { return float64(r.rows) / r.ceiling.Seconds() }
func (r catchUpResult) streamerRate() float64 { return float64(r.rows) / r.streamer.Seconds() }

// catchUp builds a backlog with load, then reads it once with pg_recvlogical
// and once with the streamer, each from its own slot made before the load.
func (b *bench) catchUp(ctx context.Context, name string, rows int, profile bool, load func(context.Context, int) error) (catchUpResult, error) {
	r := catchUpResult{name: name, rows: rows}
	ceilingSlot, streamerSlot, ceilingAfterSlot := b.name("ceiling"), b.name("streamer"), b.name("ceiling")
	for _, s := range []string{ceilingSlot, streamerSlot, ceilingAfterSlot} {
		if err := b.createSlot(ctx, s); err != nil {
			return r, err
		}
		defer b.dropSlot(context.Background(), s)
	}
	if err := load(ctx, rows); err != nil {
		return r, fmt.Errorf("load: %w", err)
	}
	end, err := b.insertLSN(ctx)
	if err != nil {
		return r, err
	}

	if r.ceiling, err = b.recvlogical(ctx, ceilingSlot, end); err != nil {
		return r, err
	}

	started := time.Now()
	var extra []string
	if profile && b.cfg.profDir != "" {
		extra = append(extra, "PPROF=true")
	}
	p, err := b.startStreamer(streamerSlot, "bench."+streamerSlot, extra...)
	if err != nil {
		return r, err
	}
	profDone := make(chan string, 1)
	if profile && b.cfg.profDir != "" {
		go func() { profDone <- b.profile(p.port) }()
	} else {
		profDone <- ""
	}
	for {
		c, err := b.confirmed(ctx, streamerSlot)
		if err != nil {
			_ = p.stop()
			return r, err
		}
		if c >= end {
			break
		}
		if time.Since(started) > 10*time.Minute {
			_ = p.stop()
			return r, fmt.Errorf("streamer did not catch up in 10 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.streamer = time.Since(started)
	r.cpu, r.peakRSS = p.cpu(), p.status("VmHWM")
	r.profileTop = <-profDone
	time.Sleep(5 * time.Second) // idle: nothing new to read
	r.idleRSS = p.status("VmRSS")
	if err := p.stop(); err != nil {
		return r, err
	}
	// The ceiling again, now that the WAL is as warm for it as it was for
	// the streamer: the faster of the two runs is the one reported.
	again, err := b.recvlogical(ctx, ceilingAfterSlot, end)
	if err != nil {
		return r, err
	}
	r.ceiling = min(r.ceiling, again)
	return r, nil
}

// recvlogical reads slot up to end with pg_recvlogical (pgoutput, the same
// publication) into /dev/null, without its periodic fsync.
func (b *bench) recvlogical(ctx context.Context, slot string, end pglogrepl.LSN) (time.Duration, error) {
	started := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.pgBin, "pg_recvlogical"), "-d", b.dsn, "-S", slot,
		"--start", "--no-loop", "-F", "0", "-E", end.String(), "-f", "/dev/null",
		"-o", "proto_version=1", "-o", "publication_names=users_pub")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %w", err)
	}
	return time.Since(started), nil
}

// profile records a CPU profile of the streamer's first seconds of catch-up
// and a heap profile, and returns pprof's top entries.
func (b *bench) profile(port int) string {
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
	cpuPath := filepath.Join(b.cfg.profDir, "streamer-cpu.pprof")
	if err := fetch(base+"profile?seconds=5", cpuPath); err != nil {
		return "profile failed: " + err.Error()
	}
	_ = fetch(base+"heap", filepath.Join(b.cfg.profDir, "streamer-heap.pprof"))
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", filepath.Join(b.cfg.bin, "streamer"), cpuPath).Output()
	if err != nil {
		return "pprof failed: " + err.Error()
	}
	return string(out)
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

// insertSingles commits rows one-row transactions with pgbench (4 clients).
func (b *bench) insertSingles(ctx context.Context, rows int) error {
	script, err := os.CreateTemp("", "bench-*.sql")
	if err != nil {
		return err
	}
	defer os.Remove(script.Name())
	fmt.Fprintln(script, "INSERT INTO users (username, country_code, created_at, api_version) VALUES ('single-' || gen_random_uuid(), 'NL', now(), 'bench');")
	script.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.pgBin, "pgbench"), "-n", "-c", "4", "-j", "2",
		"-t", fmt.Sprint(rows/4), "-f", script.Name(), b.dsn)
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
	p, err := b.startStreamer(slot, "bench."+slot)
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
