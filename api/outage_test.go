package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/testenv"
)

func TestDatabaseOutageGives503AndTheAPIRecoversByItself(t *testing.T) {
	t.Parallel()
	cluster := testenv.NewCluster(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, cluster.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE outage"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	ta := startAPI(t, testenv.WithDatabase(t, cluster.DSN(), "outage"))

	if resp := ta.post(`{"username":"before-outage","country_code":"BE","created_at":"2021-01-01 00:00:00"}`); resp.status != http.StatusCreated {
		t.Fatalf("before the outage: %d %s", resp.status, resp.body)
	}

	cluster.Stop(t)
	resp := ta.post(`{"username":"during-outage","country_code":"BE","created_at":"2021-01-01 00:00:00"}`)
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("during the outage: %d (Retry-After %q) %s, want 503 with Retry-After", resp.status, resp.header.Get("Retry-After"), resp.body)
	}
	if r := ta.do(http.MethodGet, "/readyz", "", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage = %d, want 503", r.status)
	}
	if r := ta.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("healthz during the outage = %d, want 200 (the process is alive)", r.status)
	}

	cluster.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp = ta.post(`{"username":"after-outage","country_code":"BE","created_at":"2021-01-01 00:00:00"}`)
		if resp.status == http.StatusCreated {
			break
		}
		if resp.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the outage: %d %s", resp.status, resp.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := ta.userCount(); n != 2 {
		t.Errorf("%d rows, want 2 (before and after the outage)", n)
	}
}
