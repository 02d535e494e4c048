package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/api"
	"github.com/userstream/userstream/internal/e2e"
	"github.com/userstream/userstream/migrations"
	"github.com/userstream/userstream/userdb"
)

const testVersion = "9.9.9-test"

// testAPI is the real server on a loopback port, over a fresh database. It
// validates every response against openapi.yaml, and when the test ends it
// checks that no username the test sent appears in the server's logs.
type testAPI struct {
	t        *testing.T
	base     string
	pool     *pgxpool.Pool
	logs     *e2e.SyncBuffer
	router   routers.Router
	mu       sync.Mutex
	personal []string
}

func startAPI(t *testing.T, dsn string) *testAPI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return migrations.Migrate(ctx, c.Conn()) }); err != nil {
		t.Fatal(err)
	}
	logs := &e2e.SyncBuffer{}
	srv := api.NewServer(api.Config{Addr: "127.0.0.1:0", DBTimeout: 2 * time.Second},
		userdb.New(pool, testVersion), zerolog.New(logs), prometheus.NewRegistry())
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	ta := &testAPI{t: t, base: "http://" + srv.Addr(), pool: pool, logs: logs, router: openAPIRouter(t)}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		pool.Close()
		ta.checkLogsHoldNoPersonalData()
	})
	return ta
}

func openAPIRouter(t *testing.T) routers.Router {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is invalid: %v", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %q", err, r.body)
	}
	return m
}

// do sends a request and validates the response against the OpenAPI file.
func (ta *testAPI) do(method, path, contentType string, body []byte, header ...string) response {
	t := ta.t
	t.Helper()
	req, err := http.NewRequest(method, ta.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ta.validate(req, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// post sends a JSON body and remembers the username in it as personal data.
func (ta *testAPI) post(body string) response {
	ta.t.Helper()
	ta.remember(body)
	return ta.do(http.MethodPost, "/users", "application/json", []byte(body))
}

func (ta *testAPI) remember(body string) {
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) == nil {
		if u, ok := m["username"].(string); ok && len(u) >= 4 {
			ta.mu.Lock()
			ta.personal = append(ta.personal, u)
			ta.mu.Unlock()
		}
	}
}

func (ta *testAPI) validate(req *http.Request, resp *http.Response, body []byte) {
	t := ta.t
	t.Helper()
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", req.Method, req.URL.Path)
	}
	route, params, err := ta.router.FindRoute(req)
	if err != nil {
		// A method the API does not offer: the answer must still be a problem.
		if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: no OpenAPI route (%v) for status %d", req.Method, req.URL.Path, err, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: Content-Type %q, want application/problem+json", req.Method, req.URL.Path, ct)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s → %d does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}

func (ta *testAPI) userCount() int {
	ta.t.Helper()
	var n int
	if err := ta.pool.QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		ta.t.Fatalf("count users: %v", err)
	}
	return n
}

func (ta *testAPI) checkLogsHoldNoPersonalData() {
	logs := ta.logs.String()
	if !strings.Contains(logs, `"route"`) {
		ta.t.Errorf("the server logged no request at all: the log check would prove nothing")
	}
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for _, u := range ta.personal {
		if strings.Contains(logs, u) {
			ta.t.Errorf("a username sent by the test appears in the server's logs")
			return
		}
	}
}
