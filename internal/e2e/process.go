// Package e2e runs the project's real programs as child processes and audits
// what reached Kafka against the users table. The streamer's end-to-end tests
// and the fault suite share it.
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process the test may SIGTERM or SIGKILL.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan error
	err  error
}

// Start runs bin with args and extra environment; the process is killed when
// the test ends, and its output is logged if the test failed.
func Start(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &Process{Name: name, cmd: cmd, out: &SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// Stop sends SIGTERM and waits up to timeout for the exit; it returns the
// exit error (nil for status 0).
func (p *Process) Stop(t testing.TB, timeout time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.wait(timeout) {
		t.Fatalf("%s did not exit within %s of SIGTERM", p.Name, timeout)
	}
	return p.err
}

// Signal sends sig (SIGSTOP and SIGCONT make a zombie of a live process).
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
}

// Kill sends SIGKILL and reaps the process.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	p.wait(time.Minute)
}

// Exited waits up to timeout for the process to end by itself.
func (p *Process) Exited(timeout time.Duration) (bool, error) {
	return p.wait(timeout), p.err
}

func (p *Process) wait(timeout time.Duration) bool {
	if p.done == nil {
		return true
	}
	select {
	case p.err = <-p.done:
		p.done = nil
		return true
	case <-time.After(timeout):
		return false
	}
}

// Output is everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// PeakRSS is the process's high-water resident set size in bytes (VmHWM).
func (p *Process) PeakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read %s status: %v", p.Name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %s", p.Name)
	return 0
}

// WaitFor polls cond every 50 ms until it holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort asks the kernel for a free loopback port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
