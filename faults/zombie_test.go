package faults

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
)

func TestAFrozenStreamerThawedAfterTheStandbyTookOverCommitsNothing(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, s *stack) {
		sc := size()
		// A short wal_sender_timeout: PostgreSQL drops the frozen streamer's
		// connection within seconds, and the standby takes the slot.
		dsn := "DATABASE_URL=" + e2e.WithServerOption(t, s.dsn, "wal_sender_timeout=2s")

		portA, portB := e2e.FreePort(t), e2e.FreePort(t)
		a := s.streamer(portA, dsn)
		e2e.WaitFor(t, 30*time.Second, "streamer A active", func() bool { return role(portA) == "active" })
		b := s.streamer(portB, dsn)
		e2e.WaitFor(t, 30*time.Second, "streamer B on standby", func() bool { return role(portB) == "standby" })

		load := e2e.StartLoad(s.api, "zombie", sc.rate, sc.rows)
		time.Sleep(time.Duration(sc.rows/3) * time.Second / time.Duration(sc.rate))
		frozen := time.Now()
		a.Signal(t, syscall.SIGSTOP)
		e2e.WaitFor(t, time.Minute, "streamer B to take over", func() bool { return role(portB) == "active" })
		recovery := time.Since(frozen)
		time.Sleep(2 * time.Second) // B streams and commits while A is frozen
		a.Signal(t, syscall.SIGCONT)
		load.Wait()
		if exited, err := b.Exited(0); exited {
			t.Fatalf("streamer B exited: %v", err)
		}
		e2e.WaitFor(t, 30*time.Second, "the thawed streamer to stand by", func() bool { return role(portA) == "standby" })
		fenced := "lost its PostgreSQL connection first"
		if strings.Contains(strings.ToLower(a.Output()), "fenced") {
			fenced = "its Kafka transaction was fenced"
		}
		s.finish("zombie: SIGSTOP the active streamer, standby takes over, SIGCONT", load, recovery,
			"wal_sender_timeout 2 s; the thawed streamer "+fenced+" and went back to standby")
	})
}
