package replication_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"

	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/replication"
)

// With several hosts in a DSN, each connection picks one by itself; a
// session's target reaches only the server its first connection reached.
func TestAPinnedTargetConnectsToItsServerOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// A second host that takes connections (and drops them), listed first.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	real := u.Host
	u.Host = fmt.Sprintf("%s,%s", other.Addr(), real)
	multi := u.String()

	first, err := replication.Target{DSN: multi}.Connect(ctx)
	if err != nil {
		t.Fatalf("an unpinned target of %s: %v", multi, err)
	}
	pinned := replication.PinnedTo(multi, first)
	first.Close(ctx)
	if pinned.Server != real {
		t.Fatalf("pinned to %q, want the server reached, %q", pinned.Server, real)
	}
	conn, err := pinned.Connect(ctx)
	if err != nil {
		t.Fatalf("the pinned target: %v", err)
	}
	conn.Close(ctx)
	if _, err := (replication.Target{DSN: multi, Server: other.Addr().String()}).Connect(ctx); err == nil {
		t.Fatal("a target pinned to the other host reached the real server")
	}
	if _, err := replication.Identify(ctx, pinned); err != nil {
		t.Fatalf("a replication connection of the pinned target: %v", err)
	}
}
