package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
		r := b.apiLoad(base, c)
		tps, err := b.pgbench(ctx, c)
		if err != nil {
			return nil, err
		}
		r.pgbenchTPS = tps
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) apiLoad(base string, clients int) apiResult {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		created  int
		failures int
	)
	tag := b.name("api")
	stop := time.Now().Add(b.cfg.window)
	started := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			ok, bad := 0, 0
			for i := 0; time.Now().Before(stop); i++ {
				body := fmt.Sprintf(`{"username":"%s-%d-%d","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, tag, w, i)
				t0 := time.Now()
				resp, err := client.Post(base+"/users", "application/json", strings.NewReader(body))
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				if resp.StatusCode == http.StatusCreated {
					ok++
				} else {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			created += ok
			failures += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	s := summarize(0, 0, lat)
	return apiResult{clients: clients, created: created, errors: failures, rate: float64(created) / elapsed.Seconds(), p50: s.p50, p99: s.p99}
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
