package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/testenv"
)

// Broker is devkafka as a child process on a fixed port with its data on
// disk, so a test can stop it, SIGKILL it and start it again.
type Broker struct {
	t    testing.TB
	Port int
	dir  string
	proc *Process
}

// StartBroker starts a private broker.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{t: t, Port: FreePort(t), dir: t.TempDir()}
	b.Start()
	return b
}

// Addr is the bootstrap address.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// Start (re)starts the broker on its port with its data.
func (b *Broker) Start() {
	b.t.Helper()
	b.proc = Start(b.t, "devkafka", testenv.Bin(b.t, "devkafka"), nil,
		"--port", fmt.Sprint(b.Port), "--data-dir", b.dir)
	WaitFor(b.t, 30*time.Second, "devkafka to listen", func() bool {
		c, err := dial(b.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// Stop stops the broker cleanly (SIGTERM), persisting its state.
func (b *Broker) Stop() {
	b.t.Helper()
	if err := b.proc.Stop(b.t, time.Minute); err != nil {
		b.t.Fatalf("devkafka exit: %v", err)
	}
}

// Kill SIGKILLs the broker: idempotent-producer state is lost with it.
func (b *Broker) Kill() { b.proc.Kill() }
