package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/envelope"
)

// latencyResult is commit-to-consumer latency and the cost per event at
// one offered load, with the whole stack running: the streamer, the
// archiver writing its lake, the broker and the walsender.
type latencyResult struct {
	mode                 string // the streamer's delivery mode
	variant              string // a setting changed from the defaults, shown beside the mode; not judged
	rate, sent, received int
	took                 time.Duration // how long the inserter ran
	// From each event's commit time (ce_time) to a consumer receiving it:
	// an upper bound of commit-to-acknowledgement, exact per event.
	p50, p95, p99, max time.Duration
	// The streamer's own commit-to-delivery-report histogram: the bucket
	// bound under which 50% and 99% of this phase's events fell.
	ackP50, ackP99 string
	cpuBusy        float64 // the machine's CPU busy fraction during the phase
	// CPU time of each process over the phase, from /proc: streamer,
	// archiver, broker (absent against an external Kafka), walsender.
	cpu map[string]time.Duration
	// statusUpdates is how many standby status updates the streamer sent
	// over the phase.
	statusUpdates float64
}

// The processes whose CPU time a steady-load phase reports, in order.
var costed = []string{"streamer", "archiver", "broker", "walsender"}

// achieved is the insert rate the inserter reached.
func (l latencyResult) achieved() float64 { return float64(l.sent) / l.took.Seconds() }

// perThousand is a process's CPU seconds per 1,000 events, and whether it
// was measured.
func (l latencyResult) perThousand(proc string) (float64, bool) {
	d, ok := l.cpu[proc]
	if !ok || l.sent == 0 {
		return 0, false
	}
	return d.Seconds() * 1000 / float64(l.sent), true
}

// latencies measures each delivery mode at each rate with the defaults,
// then exactly-once with a longer TRANSACTION_INTERVAL at the lowest rate:
// the trade between its latency and its cost per event.
func (b *bench) latencies(ctx context.Context, rates []int) ([]latencyResult, error) {
	var out []latencyResult
	for _, mode := range deliveries {
		r, err := b.latency(ctx, mode, "", rates)
		if err != nil {
			return out, fmt.Errorf("%s: %w", mode, err)
		}
		out = append(out, r...)
	}
	r, err := b.latency(ctx, "exactly-once", "TRANSACTION_INTERVAL=50ms", rates[:1])
	if err != nil {
		return out, fmt.Errorf("exactly-once, TRANSACTION_INTERVAL=50ms: %w", err)
	}
	return append(out, r...), nil
}

// latency runs the stack as users run it (a streamer in mode and an
// archiver writing a file:// lake) beside an independent read_committed
// consumer, and measures latency and CPU at each rate in turn.
func (b *bench) latency(ctx context.Context, mode, variant string, rates []int) ([]latencyResult, error) {
	slot := b.name("latency")
	if err := b.createSlot(ctx, slot); err != nil {
		return nil, err
	}
	defer b.dropSlot(context.Background(), slot)
	topic := topicFor(slot)
	env := []string{"DELIVERY=" + mode}
	if variant != "" {
		env = append(env, variant)
	}
	p, err := b.startStreamer(slot, topic, env...)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := waitActive(p.port); err != nil {
		return nil, err
	}
	arch, err := b.startArchiver(topic)
	if err != nil {
		return nil, err
	}
	defer arch.close()

	// read_committed in both modes, set here rather than left to the
	// client's default: in exactly-once mode it is what a consumer must use,
	// and it sees a record only once its Kafka transaction committed; in
	// at-least-once mode it changes nothing (no transactions). The fetch
	// waits for data as a real consumer's does: the broker answers as soon as
	// a record is readable, without the consumer polling it.
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": b.cfg.kafka, "group.id": b.name("latency-consumer"), "auto.offset.reset": "earliest",
		"isolation.level": "read_committed", "fetch.wait.max.ms": 100, "fetch.min.bytes": 1, "log_level": 3,
	})
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	if err := cons.Subscribe(topic, nil); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	lat := map[string][]time.Duration{} // by phase prefix
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for cctx.Err() == nil {
			m, err := cons.ReadMessage(50 * time.Millisecond)
			if err != nil {
				continue
			}
			now := time.Now()
			var commit time.Time
			for _, h := range m.Headers {
				if h.Key == envelope.Time {
					commit, _ = time.Parse(time.RFC3339Nano, string(h.Value))
				}
			}
			var v struct{ Username string }
			_ = json.Unmarshal(m.Value, &v)
			phase, _, _ := strings.Cut(v.Username, "-")
			mu.Lock()
			lat[phase] = append(lat[phase], now.Sub(commit))
			mu.Unlock()
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	var walsender int
	if err := b.pool.QueryRow(ctx, "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walsender); err != nil {
		return nil, err
	}
	pids := map[string]int{"streamer": p.cmd.Process.Pid, "archiver": arch.cmd.Process.Pid, "walsender": walsender}
	if b.cfg.brokerPID != 0 {
		pids["broker"] = b.cfg.brokerPID
	}
	// A warm-up, not measured: the consumer and the archiver have joined
	// their groups and fetched once, and the streamer has bound the table.
	if err := waitReady(arch.port); err != nil {
		return nil, err
	}
	tag := strings.ReplaceAll(mode, "-", "") + fmt.Sprint(b.seq) // unique per pass: usernames are unique
	warm := tag + "warmup"
	n, err := b.steadyInserts(ctx, warm, 100, 2*time.Second)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got := len(lat[warm])
		mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the consumer received %d of %d warm-up events in 30 s", got, n)
		}
	}

	var out []latencyResult
	for _, rate := range rates {
		before, err := scrapeHistogram(p.port)
		if err != nil {
			return nil, err
		}
		phase := fmt.Sprintf("%sr%d", tag, rate)
		cpu0 := cpuOf(pids)
		status0 := metric(p.port, "userstream_streamer_status_updates_total")
		busy0, total0 := cpuTicks()
		began := time.Now()
		sent, err := b.steadyInserts(ctx, phase, rate, b.cfg.window)
		took := time.Since(began)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(lat[phase])
			mu.Unlock()
			if n >= sent || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The archiver reads what the consumer read; a moment for its last
		// records keeps their cost inside the phase.
		time.Sleep(200 * time.Millisecond)
		busy1, total1 := cpuTicks()
		cpu1 := cpuOf(pids)
		status1 := metric(p.port, "userstream_streamer_status_updates_total")
		after, err := scrapeHistogram(p.port)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		r := summarize(rate, sent, lat[phase])
		r.mode, r.variant = mode, variant
		mu.Unlock()
		r.took, r.statusUpdates = took, status1-status0
		r.ackP50, r.ackP99 = quantileBucket(before, after, 0.50), quantileBucket(before, after, 0.99)
		if total1 > total0 {
			r.cpuBusy = float64(busy1-busy0) / float64(total1-total0)
		}
		r.cpu = map[string]time.Duration{}
		for name, c := range cpu1 {
			r.cpu[name] = c - cpu0[name]
		}
		if err := arch.alive(); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// cpuOf reads each process's CPU time.
func cpuOf(pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		if pid != 0 {
			out[name] = procCPU(pid)
		}
	}
	return out
}

// steadyInserts commits single-row inserts at rate per second over
// max(8, rate/150) connections for d, and returns how many it committed.
// An inserter that falls behind does not catch up in bursts: each
// connection keeps its own schedule, and what it missed shows as a lower
// achieved rate.
func (b *bench) steadyInserts(ctx context.Context, phase string, rate int, d time.Duration) (int, error) {
	// Enough connections for the rate with durable commits, and no more:
	// idle connections cost the 2 cores context switches.
	conns := max(8, rate/150)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		sent  int
		first error
	)
	interval := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	stop := time.Now().Add(d)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(interval * time.Duration(c) / time.Duration(conns))
			for i := 0; time.Now().Before(stop); i++ {
				if w := time.Until(next); w > 0 {
					time.Sleep(w)
				} else if -w > interval {
					next = time.Now() // behind: the missed inserts are not made up
				}
				next = next.Add(interval)
				_, err := b.pool.Exec(ctx, `INSERT INTO users (username, country_code, created_at, api_version) VALUES ($1, 'FR', now(), 'bench')`,
					fmt.Sprintf("%s-%d-%d", phase, c, i))
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					sent++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return sent, first
}

func summarize(rate, sent int, l []time.Duration) latencyResult {
	r := latencyResult{rate: rate, sent: sent, received: len(l)}
	if len(l) == 0 {
		return r
	}
	s := append([]time.Duration(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[int(math.Ceil(p*float64(len(s))))-1] }
	r.p50, r.p95, r.p99, r.max = q(0.50), q(0.95), q(0.99), s[len(s)-1]
	return r
}

// waitActive waits for a streamer's /readyz to name it active.
func waitActive(port int) error {
	return waitReadyz(port, "streamer active", func(resp *http.Response) bool {
		var body struct{ Role string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return body.Role == "active"
	})
}

// waitReady waits for a program's /readyz to answer 200.
func waitReady(port int) error {
	return waitReadyz(port, "ready", func(resp *http.Response) bool { return resp.StatusCode == http.StatusOK })
}

// waitReadyz asks a program's /readyz every 100 ms, for up to 30 s, until ok.
func waitReadyz(port int, what string, ok func(*http.Response) bool) error {
	for i := 0; i < 300; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err == nil {
			done := ok(resp)
			resp.Body.Close()
			if done {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not %s within 30 s (port %d)", what, port)
}

// scrapeHistogram reads the commit-to-ack histogram's cumulative buckets.
func scrapeHistogram(port int) (map[string]float64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	const prefix = `userstream_streamer_commit_to_ack_seconds_bucket{le="`
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		le, rest, _ := strings.Cut(strings.TrimPrefix(line, prefix), `"}`)
		v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		out[le] = v
	}
	return out, sc.Err()
}

// quantileBucket is the smallest bucket bound holding q of the events
// between two scrapes.
func quantileBucket(before, after map[string]float64, q float64) string {
	type bucket struct {
		le    float64
		label string
		n     float64
	}
	var bs []bucket
	for label, n := range after {
		le := math.Inf(1)
		if label != "+Inf" {
			le, _ = strconv.ParseFloat(label, 64)
		}
		bs = append(bs, bucket{le, label, n - before[label]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return "–"
	}
	total := bs[len(bs)-1].n
	for _, b := range bs {
		if b.n >= q*total {
			if math.IsInf(b.le, 1) {
				return "> 30 s"
			}
			return "≤ " + (time.Duration(b.le * float64(time.Second))).String()
		}
	}
	return "–"
}

// cpuTicks reads the machine's busy and total CPU ticks from /proc/stat.
func cpuTicks() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total
}
