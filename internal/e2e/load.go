package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/api"
	"github.com/userstream/userstream/userdb"
)

// StartAPI serves the real users API over pool on a loopback port until the
// test ends, and returns its base URL.
func StartAPI(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := api.NewServer(api.Config{Addr: "127.0.0.1:0", DBTimeout: 2 * time.Second},
		userdb.New(pool, "test"), zerolog.Nop(), prometheus.NewRegistry())
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + srv.Addr()
}

// Load posts distinct valid users to the API at a steady rate. Failed
// requests are counted, not retried: the audit compares Kafka with what the
// table holds, whatever the API answered.
type Load struct {
	Created     atomic.Int64 // 201
	Unavailable atomic.Int64 // 503 or no answer (database down)
	Other       atomic.Int64 // anything else: a bug
	Sent        atomic.Int64
	done        chan struct{}
	cancel      context.CancelFunc
}

// StartLoad sends total requests at rate per second over 8 connections.
func StartLoad(baseURL, prefix string, rate, total int) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{done: make(chan struct{}), cancel: cancel}
	jobs := make(chan int)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				l.post(client, baseURL, fmt.Sprintf("%s-%06d", prefix, i))
			}
		}()
	}
	go func() {
		defer close(l.done)
		defer wg.Wait()
		defer close(jobs)
		interval := time.Second / time.Duration(rate)
		next := time.Now()
		for i := 0; i < total; i++ {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			next = next.Add(interval)
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	return l
}

func (l *Load) post(client *http.Client, base, username string) {
	l.Sent.Add(1)
	body := fmt.Sprintf(`{"username":%q,"country_code":"BE","created_at":"2024-05-06 07:08:09","is_a_dog":true}`, username)
	resp, err := client.Post(base+"/users", "application/json", strings.NewReader(body))
	if err != nil {
		l.Unavailable.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		l.Created.Add(1)
	case http.StatusServiceUnavailable:
		l.Unavailable.Add(1)
	default:
		l.Other.Add(1)
	}
}

// Wait blocks until every request was sent and answered.
func (l *Load) Wait() { <-l.done }

// Stop ends the load early and waits for it.
func (l *Load) Stop() {
	l.cancel()
	<-l.done
}
