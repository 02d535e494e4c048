package main

import (
	"context"
	"debug/elf"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userstream/userstream/migrations"
)

// bench holds the database the benchmarks write to.
type bench struct {
	cfg  config
	dsn  string // superuser DSN of the bench database
	pool *pgxpool.Pool
	seq  int
}

func newBench(ctx context.Context, cfg config) (*bench, error) {
	admin, err := pgx.Connect(ctx, cfg.adminDSN)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS bench WITH (FORCE)"); err != nil {
		return nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE bench"); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.adminDSN)
	if err != nil {
		return nil, err
	}
	u.Path = "/bench"
	b := &bench{cfg: cfg, dsn: u.String()}
	pcfg, err := pgxpool.ParseConfig(b.dsn)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = 48 // the steady inserter's connections at 5,000/s, and some
	if b.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, err
	}
	err = b.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return migrations.Migrate(ctx, c.Conn()) })
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return b, nil
}

func (b *bench) close() { b.pool.Close() }

func (b *bench) name(prefix string) string {
	b.seq++
	return fmt.Sprintf("%s_%d", prefix, b.seq)
}

// insertLSN is past every commit so far.
func (b *bench) insertLSN(ctx context.Context) (pglogrepl.LSN, error) {
	var s string
	if err := b.pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(s)
}

func (b *bench) createSlot(ctx context.Context, name string) error {
	_, err := b.pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	return err
}

func (b *bench) dropSlot(ctx context.Context, name string) {
	_, _ = b.pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
}

func (b *bench) confirmed(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	var s string
	err := b.pool.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s)
	if err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(s)
}

// proc is a child process with its resource figures.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	port int
}

func (b *bench) startStreamer(slot, topic string, extra ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "DATABASE_URL="+b.dsn, "KAFKA_BOOTSTRAP_SERVERS="+b.cfg.kafka, "KAFKA_TOPIC="+topic,
		"REPLICATION_SLOT="+slot, fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", port), "MIGRATE=false", "LOG_LEVEL=warn")
	return start(filepath.Join(b.cfg.bin, "streamer"), append(env, extra...), port, "run")
}

// archiverProc is an archiver writing a file:// lake of its own.
type archiverProc struct {
	*proc
	lake string
}

// startArchiver runs an archiver on topic, as make up runs one beside the
// streamer: its own group, a file:// lake, the default roll limits.
func (b *bench) startArchiver(topic string) (*archiverProc, error) {
	lake, err := os.MkdirTemp("", "userstream-bench-lake-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := start(filepath.Join(b.cfg.bin, "archiver"), append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS="+b.cfg.kafka,
		"KAFKA_TOPIC="+topic, "KAFKA_GROUP_ID="+topic+"-archiver", "LAKE_URL=file://"+lake, "LOG_LEVEL=warn",
		fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", port)), port, "run")
	if err != nil {
		os.RemoveAll(lake)
		return nil, err
	}
	return &archiverProc{proc: p, lake: lake}, nil
}

// alive is an error once the process has exited.
func (p *proc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v", filepath.Base(p.cmd.Path), err)
	default:
		return nil
	}
}

func (a *archiverProc) close() {
	_ = a.stop()
	os.RemoveAll(a.lake)
}

func start(bin string, env []string, port int, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), port: port}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within 60 s", p.cmd.Path)
	}
}

// status reads a /proc/<pid>/status field in bytes (VmHWM, VmRSS).
func (p *proc) status(field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the process's user+system CPU time so far.
func (p *proc) cpu() time.Duration { return procCPU(p.cmd.Process.Pid) }

// procCPU is a running process's user+system CPU time, 0 when it is gone.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
		}
	}
	return 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *bench) versions(ctx context.Context) string {
	var pg string
	_ = b.pool.QueryRow(ctx, "SHOW server_version").Scan(&pg)
	return "PostgreSQL " + pg + "; the streamer's C allocator: " + allocator(filepath.Join(b.cfg.bin, "streamer"))
}

// allocator names the C allocator a program was linked with (see
// internal/jemalloc): jemalloc when it needs libjemalloc, else glibc's.
func allocator(bin string) string {
	f, err := elf.Open(bin)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	for _, l := range libs {
		if strings.HasPrefix(l, "libjemalloc") {
			return "jemalloc"
		}
	}
	return "glibc malloc"
}
