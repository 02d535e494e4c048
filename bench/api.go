package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// apiResult is POST /users under closed-loop load, beside pgbench doing the
// same single-row INSERT at the same concurrency.
type apiResult struct {
	clients         int
	created, errors int
	rate            float64
	p50, p99        time.Duration
	pgbenchTPS      float64
}

func (b *bench) api(ctx context.Context, clients []int) ([]apiResult, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "DATABASE_URL="+b.dsn, fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), "MIGRATE=false", "DB_MAX_CONNS=16")
	p, err := start(filepath.Join(b.cfg.bin, "api"), env, port)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	p.cmd.Stderr = nil
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 300 {
			return nil, fmt.Errorf("api did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var out []apiResult
	for _, c := range clients {
		r, err := b.apiLoad(ctx, base, c)
		if err != nil {
			return nil, err
		}
		tps, err := b.pgbench(ctx, c)
		if err != nil {
			return nil, err
		}
		r.pgbenchTPS = tps
		out = append(out, r)
	}
	return out, nil
}

// apiLoad runs wrk (C, like pgbench's client, so the load generator takes
// as little of the 2 cores as the ceiling's does) with users.lua: every
// request a distinct valid user.
func (b *bench) apiLoad(ctx context.Context, base string, clients int) (apiResult, error) {
	r := apiResult{clients: clients}
	script, err := filepath.Abs(filepath.Join("bench", "users.lua"))
	if err != nil {
		return r, err
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t", "2", "-c", strconv.Itoa(clients), "-d", fmt.Sprintf("%ds", int(b.cfg.window.Seconds())),
		"--latency", "-s", script, base, "--", b.name("wrk"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	text := string(out)
	requests := firstFloat(`([0-9]+) requests in`, text)
	non2xx := firstFloat(`Non-2xx or 3xx responses: ([0-9]+)`, text)
	var sockErr float64
	if m := regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`).FindStringSubmatch(text); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseFloat(v, 64)
			sockErr += n
		}
	}
	rps := firstFloat(`Requests/sec:\s+([0-9.]+)`, text)
	if requests == 0 || rps == 0 {
		return r, fmt.Errorf("wrk printed no figures:\n%s", text)
	}
	r.errors = int(non2xx + sockErr)
	r.created = int(requests - non2xx)
	r.rate = rps * (requests - non2xx) / requests
	r.p50 = wrkDuration(regexp.MustCompile(`\s50%\s+([0-9.]+[a-z]+)`).FindStringSubmatch(text))
	r.p99 = wrkDuration(regexp.MustCompile(`\s99%\s+([0-9.]+[a-z]+)`).FindStringSubmatch(text))
	return r, nil
}

func firstFloat(pattern, text string) float64 {
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// wrkDuration parses wrk's "3.90ms", "850.00us" or "1.20s".
func wrkDuration(m []string) time.Duration {
	if m == nil {
		return 0
	}
	d, err := time.ParseDuration(strings.Replace(m[1], "us", "µs", 1))
	if err != nil {
		return 0
	}
	return d
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs the same single-row INSERT as the API at the same concurrency.
func (b *bench) pgbench(ctx context.Context, clients int) (float64, error) {
	script, err := os.CreateTemp("", "bench-*.sql")
	if err != nil {
		return 0, err
	}
	defer os.Remove(script.Name())
	fmt.Fprintln(script, "INSERT INTO users (username, country_code, created_at, is_a_dog, api_version) VALUES ('pgb-' || gen_random_uuid(), 'BE', '2021-01-01 00:00:00', false, 'pgbench') RETURNING id, username, country_code, created_at, is_a_dog, api_version;")
	script.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.pgBin, "pgbench"), "-n", "-c", strconv.Itoa(clients), "-j", "2",
		"-T", strconv.Itoa(int(b.cfg.window.Seconds())), "-f", script.Name(), b.dsn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
