package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// ceilingProto is one way of reading pgoutput with pg_recvlogical.
type ceilingProto struct {
	name string
	opts []string // pgoutput options besides the publication
}

// ceilingProtos are the ceilings measured: protocol 1, what the streamer
// speaks, and protocol 2 with in-progress transactions streamed, which sends
// a large transaction's changes while it is still being decoded.
var ceilingProtos = []ceilingProto{
	{name: "pg_recvlogical, proto v1", opts: []string{"proto_version=1"}},
	{name: "pg_recvlogical, proto v2 streaming", opts: []string{"proto_version=2", "streaming=on"}},
}

// endMarker is the prefix of the non-transactional logical message written
// just past the end of every measured WAL range (see rangeEnd).
const endMarker = "userstream-bench-end"

// rangeEnd returns the end of the WAL range to read: past every commit so
// far. It then writes a logical message at or after that position, so that
// pg_recvlogical (which asks for messages) receives a record at or past its
// --endpos and exits at once. Without it, pg_recvlogical exits on the first
// keepalive whose WAL end reaches --endpos; when the range ends after its
// last commit (a running-xacts record, for one), the walsender sends that
// keepalive only after pg_recvlogical's next status message, which comes
// every 10 s by default. The streamer does not ask for messages, so pgoutput
// never sends it this one.
func (b *bench) rangeEnd(ctx context.Context) (pglogrepl.LSN, error) {
	end, err := b.insertLSN(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := b.pool.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, 'end')", endMarker); err != nil {
		return 0, fmt.Errorf("write the end marker: %w", err)
	}
	return end, nil
}

// createSlots creates every slot in one statement, so they all start at
// the same moment of the WAL.
func (b *bench) createSlots(ctx context.Context, names []string) error {
	_, err := b.pool.Exec(ctx, "SELECT pg_create_logical_replication_slot(s, 'pgoutput') FROM unnest($1::text[]) AS s", names)
	if err != nil {
		return fmt.Errorf("create slots: %w", err)
	}
	return nil
}

// recvlogical reads slot up to end with pg_recvlogical into /dev/null, and
// times it as its own process: from its start until it exits at --endpos.
// Its CPU time comes from the kernel's accounting of the exited process; the
// walsender's is read from /proc while it runs.
func (b *bench) recvlogical(ctx context.Context, slot string, end pglogrepl.LSN, p ceilingProto) (readerRun, error) {
	r := readerRun{reader: p.name}
	args := []string{"-d", b.dsn, "-S", slot, "--start", "--no-loop", "-v",
		"-F", "0", // no fsync of /dev/null
		"-E", end.String(), "-f", "/dev/null",
		"-o", "publication_names=users_pub", "-o", "messages=true"}
	for _, o := range p.opts {
		args = append(args, "-o", o)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.pgBin, "pg_recvlogical"), args...)
	cmd.Stderr = &stderr
	busy0, total0 := cpuTicks()
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("pg_recvlogical: %w", err)
	}
	ws := b.watchWalsender(ctx, slot)
	err := cmd.Wait()
	r.wall = time.Since(started)
	r.walsenderCPU = ws.stop()
	r.busy = busySince(busy0, total0)
	if err != nil {
		os.Stderr.Write(stderr.Bytes())
		return r, fmt.Errorf("pg_recvlogical: %w", err)
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	switch out := stderr.String(); {
	case strings.Contains(out, "reached by WAL record"):
		r.stop = "record"
	case strings.Contains(out, "reached by keepalive"):
		r.stop = "keepalive"
	default:
		return r, fmt.Errorf("pg_recvlogical exited without reaching its end position:\n%s", out)
	}
	return r, nil
}

// faster is the quicker of two runs of the same reader.
func faster(a, b readerRun) readerRun {
	if b.wall < a.wall {
		return b
	}
	return a
}

// cpuWatch follows the CPU time of a slot's walsender.
type cpuWatch struct {
	done   chan struct{}
	result chan time.Duration
}

// watchWalsender finds the walsender serving slot once it is active, and
// reads its CPU time every 5 ms until stop; the walsender exits right after
// its client, so the last reading is at most one interval old.
func (b *bench) watchWalsender(ctx context.Context, slot string) *cpuWatch {
	w := &cpuWatch{done: make(chan struct{}), result: make(chan time.Duration, 1)}
	go func() {
		var pid int
		var last time.Duration
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if pid == 0 {
				_ = b.pool.QueryRow(ctx, "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
			}
			if pid != 0 {
				last = max(last, procCPU(pid))
			}
			select {
			case <-w.done:
				if pid != 0 {
					last = max(last, procCPU(pid))
				}
				w.result <- last
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *cpuWatch) stop() time.Duration {
	close(w.done)
	return <-w.result
}

// busySince is the machine's CPU busy fraction since the given ticks.
func busySince(busy0, total0 uint64) float64 {
	busy1, total1 := cpuTicks()
	if total1 <= total0 {
		return 0
	}
	return float64(busy1-busy0) / float64(total1-total0)
}
