package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/internal/testenv"
)

func TestAClientThatDisconnectsIsCounted499AndLoggedAtDebugNeverAs5xx(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	addr := strings.TrimPrefix(ta.base, "http://")
	ctx := context.Background()

	// 1. The connection closes before the body Content-Length promised.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"username\":")
	conn.Close()
	e2e.WaitFor(t, 10*time.Second, "a 499 for the truncated body", func() bool { return ta.disconnects() >= 1 })

	// 2. The client leaves while the INSERT waits: a lock held by the test
	// keeps it waiting until the server has seen the disconnect.
	tx, err := ta.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // released below; this is the safety net
	if _, err := tx.Exec(ctx, "LOCK TABLE users IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"username":"gone-client","country_code":"BE","created_at":"2021-01-01 00:00:00"}`
	ta.remember(body)
	fmt.Fprintf(conn, "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	e2e.WaitFor(t, 10*time.Second, "the INSERT to wait on the lock", func() bool {
		var waiting int
		err := ta.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO users%'").Scan(&waiting)
		return err == nil && waiting == 1
	})
	conn.Close()
	e2e.WaitFor(t, 10*time.Second, "a 499 for the client that left during the INSERT", func() bool { return ta.disconnects() >= 2 })
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	if got := ta.disconnects(); got != 2 {
		t.Errorf("%d requests counted as 499, want 2", got)
	}
	m := string(ta.do(http.MethodGet, "/metrics", "", nil).body)
	if regexp.MustCompile(`userstream_api_requests_total\{[^}]*status="5\d\d"\}`).MatchString(m) {
		t.Errorf("a disconnect was counted as a 5xx:\n%s", m)
	}
	logs := ta.logs.String()
	if strings.Contains(logs, `"level":"error"`) {
		t.Errorf("a disconnect was logged as an error:\n%s", logs)
	}
	if n := strings.Count(logs, `"level":"debug","request_id"`); n != 2 {
		t.Errorf("%d debug-level request lines, want 2 (one per disconnect):\n%s", n, logs)
	}
}

// disconnects is the number of POST /users requests counted with status 499.
func (ta *testAPI) disconnects() int {
	ta.t.Helper()
	m := string(ta.do(http.MethodGet, "/metrics", "", nil).body)
	match := regexp.MustCompile(`userstream_api_requests_total\{method="POST",route="POST /users",status="499"\} (\d+)`).FindStringSubmatch(m)
	if match == nil {
		return 0
	}
	n, _ := strconv.Atoi(match[1])
	return n
}
