package replication_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/replication"
)

// ackAt is an Acker that reports a fixed position.
type ackAt pglogrepl.LSN

func (a ackAt) Acked() pglogrepl.LSN { return pglogrepl.LSN(a) }
func (ackAt) Idle(pglogrepl.LSN)     {}
func (ackAt) InFlight() int          { return 0 }
func serverMajor(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var num int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		t.Fatal(err)
	}
	return num / 10000
}

// privateCluster is a cluster of the test's own, migrated, with slot, a
// connection to it and its major version.
func privateCluster(t *testing.T, slot string) (*testenv.Cluster, string, *pgx.Conn, int) {
	t.Helper()
	c := testenv.NewCluster(t)
	dsn := c.DSN()
	e2e.PrepareDatabase(t, dsn, slot)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return c, dsn, conn, serverMajor(t, conn)
}

// sharedCluster is a database of the test's own on the shared cluster,
// migrated, with slot, and a connection to it closed at the test's end.
func sharedCluster(t *testing.T) (dsn, slot string, conn *pgx.Conn) {
	t.Helper()
	dsn, slot = testenv.Postgres(t), testenv.Name(t, "slot")
	e2e.PrepareDatabase(t, dsn, slot)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return dsn, slot, conn
}

// Every branch by server version is taken on the versions it is for: the
// CI runs this package on PostgreSQL 15, 16, 17 and 18.
func TestTheReaderAsksForWhatTheServersVersionSupports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, slot, conn := sharedCluster(t)
	major := serverMajor(t, conn)
	if got := replication.ServerMajor(conn.PgConn()); got != major {
		t.Fatalf("ServerMajor = %d, the server is %d", got, major)
	}
	st, err := replication.Slot(ctx, conn, slot)
	if err != nil {
		t.Fatal(err)
	}
	if want := major >= replication.FailoverSlotsSince; st.Failover != want {
		t.Errorf("PostgreSQL %d: the slot is a failover slot: %v, want %v", major, st.Failover, want)
	}
	r, err := replication.Open(ctx, replication.Config{DSN: dsn, Slot: slot, Publication: "users_pub", StartLSN: st.Confirmed}, ackAt(st.Confirmed))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if got, want := slices.Contains(r.Options(), "origin 'any'"), major >= 16; got != want {
		t.Errorf("PostgreSQL %d: origin 'any' asked for: %v, want %v (options %v)", major, got, want, r.Options())
	}
}

// PostgreSQL 17 writes a logical slot's confirmed position at a shutdown
// checkpoint; before 17 only when the slot was otherwise dirty, so a
// restart may replay from an older position (duplicates, never a loss).
func TestASlotsConfirmedPositionAfterACleanRestartIsTheLastOneReportedFrom17On(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, dsn, conn, major := privateCluster(t, "restart_slot")
	st, err := replication.Slot(ctx, conn, "restart_slot")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO users (username, country_code, created_at, api_version) VALUES ('u', 'BE', now(), 'test')"); err != nil {
		t.Fatal(err)
	}
	now, err := replication.CurrentWAL(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// Report the server's position as flushed, as a streamer that delivered
	// everything does.
	r, err := replication.Open(ctx, replication.Config{DSN: dsn, Slot: "restart_slot", Publication: "users_pub", StartLSN: st.Confirmed}, ackAt(now))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SendStatus(ctx); err != nil {
		t.Fatal(err)
	}
	confirmed := func() pglogrepl.LSN {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		st, err := replication.Slot(ctx, conn, "restart_slot")
		if err != nil {
			t.Fatal(err)
		}
		return st.Confirmed
	}
	e2e.WaitFor(t, 10*time.Second, "the reported position", func() bool { return confirmed() == now })
	r.Close(ctx)
	c.Stop(t)
	c.Start(t)
	after := confirmed()
	switch {
	case major >= 17 && after != now:
		t.Errorf("PostgreSQL %d: after a clean restart the slot is at %s, want %s, the last position reported", major, after, now)
	case after > now:
		t.Errorf("PostgreSQL %d: after a restart the slot is at %s, past %s, the last position reported", major, after, now)
	case major < 17 && after < now:
		t.Logf("PostgreSQL %d: after a clean restart the slot went back from %s to %s: replayed as duplicates", major, now, after)
	}
}

// PostgreSQL 18 invalidates a slot left inactive past
// idle_replication_slot_timeout (at a checkpoint); the streamer then finds it
// lost, with wal_status lost. Before 18 there is no such setting.
func TestAnIdleSlotIsInvalidatedPastIdleReplicationSlotTimeoutFrom18On(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, conn, major := privateCluster(t, "idle_slot")
	defer conn.Close(ctx)
	_, err := conn.Exec(ctx, "ALTER SYSTEM SET idle_replication_slot_timeout = '1s'")
	if major < 18 {
		if err == nil || !strings.Contains(err.Error(), "idle_replication_slot_timeout") {
			t.Fatalf("PostgreSQL %d: ALTER SYSTEM SET idle_replication_slot_timeout: %v, want an unknown setting", major, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	// inactive_since is set when the slot is released; a fresh slot has it
	// from its creation.
	time.Sleep(2 * time.Second)
	e2e.WaitFor(t, 30*time.Second, "the idle slot to be invalidated at a checkpoint", func() bool {
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
		_, err := replication.Slot(ctx, conn, "idle_slot")
		return err != nil && strings.Contains(err.Error(), replication.ErrSlotLost.Error())
	})
}
