package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/testenv"
)

const seedRequest = `{"username": "jtr", "country_code": "BE", "created_at": "2021-01-01 00:00:00"}`

func TestCreateUserAcceptsTheSeedArticlesRequest(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	resp := ta.post(seedRequest)
	if resp.status != http.StatusCreated {
		t.Fatalf("status %d, want 201: %s", resp.status, resp.body)
	}
	got := resp.json(t)
	if loc, want := resp.header.Get("Location"), fmt.Sprintf("/users/%v", got["id"]); loc != want {
		t.Errorf("Location %q, want %q", loc, want)
	}
	for k, want := range map[string]any{"username": "jtr", "country_code": "BE", "created_at": "2021-01-01T00:00:00Z", "is_a_dog": false, "api_version": testVersion} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	var isADog bool
	var apiVersion string
	var createdAt time.Time
	err := ta.pool.QueryRow(context.Background(), "SELECT is_a_dog, api_version, created_at FROM users WHERE username = 'jtr'").Scan(&isADog, &apiVersion, &createdAt)
	if err != nil {
		t.Fatal(err)
	}
	if isADog || apiVersion != testVersion || !createdAt.Equal(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("row is_a_dog=%v api_version=%q created_at=%v; want false, %q, 2021-01-01 00:00:00", isADog, apiVersion, createdAt, testVersion)
	}

	again := ta.do(http.MethodGet, resp.header.Get("Location"), "", nil)
	if again.status != http.StatusOK || again.json(t)["username"] != "jtr" {
		t.Errorf("GET %s = %d %s", resp.header.Get("Location"), again.status, again.body)
	}
}

func TestCreateUserTakesRFC3339InAnyOffsetAsUTCAndCountryInAnyCase(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	resp := ta.post(`{"username":"offset-user","country_code":"be","created_at":"2021-01-01T02:30:00.123456+02:00","is_a_dog":true}`)
	if resp.status != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	got := resp.json(t)
	if got["created_at"] != "2021-01-01T00:30:00.123456Z" || got["country_code"] != "BE" || got["is_a_dog"] != true {
		t.Errorf("got %v", got)
	}
}

func TestCreateUserRejectsBadInputWithAProblemAndWritesNothing(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	if resp := ta.post(`{"username":"taken-name","country_code":"BE","created_at":"2021-01-01 00:00:00"}`); resp.status != http.StatusCreated {
		t.Fatalf("setup: %d %s", resp.status, resp.body)
	}
	before := ta.userCount()

	valid := func(override string) string {
		return `{"username":"fresh-user","country_code":"BE","created_at":"2021-01-01 00:00:00"` + override + `}`
	}
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		field       string // a field the problem must name, if any
	}{
		{name: "username is a number", body: `{"username":42,"country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username is null", body: `{"username":null,"country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username missing", body: `{"country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username empty", body: `{"username":"","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username of 101 characters", body: `{"username":"` + strings.Repeat("é", 101) + `","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username of 60 KiB", body: `{"username":"` + strings.Repeat("x", 60<<10) + `","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username with invalid UTF-8", body: "{\"username\":\"bad\xff\xfeutf8\",\"country_code\":\"BE\",\"created_at\":\"2021-01-01 00:00:00\"}", status: 400, field: "username"},
		{name: "username with a lone surrogate", body: `{"username":"half\ud800pair","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username with a control character", body: `{"username":"bell\u0007user","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username with a newline", body: `{"username":"two\nlines","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username is an object", body: `{"username":{"a":1},"country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "username taken", body: `{"username":"taken-name","country_code":"FR","created_at":"2022-01-01 00:00:00"}`, status: 409},
		{name: "country unknown", body: `{"username":"fresh-user","country_code":"ZZ","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country is a region, not a country", body: `{"username":"fresh-user","country_code":"EU","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country is an alias (UK)", body: `{"username":"fresh-user","country_code":"UK","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country of three letters", body: `{"username":"fresh-user","country_code":"BEL","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country numeric", body: `{"username":"fresh-user","country_code":"56","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country missing", body: `{"username":"fresh-user","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "country is a boolean", body: `{"username":"fresh-user","country_code":true,"created_at":"2021-01-01 00:00:00"}`, status: 400, field: "country_code"},
		{name: "created_at on February 30th", body: `{"username":"fresh-user","country_code":"BE","created_at":"2021-02-30 00:00:00"}`, status: 400, field: "created_at"},
		{name: "created_at at hour 25", body: `{"username":"fresh-user","country_code":"BE","created_at":"2021-01-01 25:00:00"}`, status: 400, field: "created_at"},
		{name: "created_at in another format", body: `{"username":"fresh-user","country_code":"BE","created_at":"01/01/2021"}`, status: 400, field: "created_at"},
		{name: "created_at as a unix time", body: `{"username":"fresh-user","country_code":"BE","created_at":1609459200}`, status: 400, field: "created_at"},
		{name: "created_at missing", body: `{"username":"fresh-user","country_code":"BE"}`, status: 400, field: "created_at"},
		{name: "created_at null", body: `{"username":"fresh-user","country_code":"BE","created_at":null}`, status: 400, field: "created_at"},
		{name: "is_a_dog is a string", body: valid(`,"is_a_dog":"yes"`), status: 400, field: "is_a_dog"},
		{name: "is_a_dog is null", body: valid(`,"is_a_dog":null`), status: 400, field: "is_a_dog"},
		{name: "api_version set by the client", body: valid(`,"api_version":"hacked"`), status: 400, field: "api_version"},
		{name: "unknown field", body: valid(`,"admin":true`), status: 400, field: "admin"},
		{name: "field given twice", body: `{"username":"fresh-user","username":"other-user","country_code":"BE","created_at":"2021-01-01 00:00:00"}`, status: 400, field: "username"},
		{name: "an array instead of an object", body: `[` + valid("") + `]`, status: 400},
		{name: "a bare string", body: `"jtr"`, status: 400},
		{name: "null body", body: `null`, status: 400},
		{name: "empty body", body: ``, status: 400},
		{name: "malformed JSON", body: `{"username":"fresh-user",`, status: 400},
		{name: "single quotes", body: `{'username':'fresh-user'}`, status: 400},
		{name: "trailing garbage", body: valid("") + `garbage`, status: 400},
		{name: "two JSON objects", body: valid("") + valid(""), status: 400},
		{name: "body over 64 KiB", body: `{"username":"` + strings.Repeat("x", 70<<10) + `"}`, status: 413},
		{name: "no content type", contentType: "-", body: valid(""), status: 415},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: "username=fresh-user", status: 415},
		{name: "text content type", contentType: "text/plain", body: valid(""), status: 415},
		{name: "PUT on /users", method: http.MethodPut, body: valid(""), status: 405},
		{name: "DELETE on /users", method: http.MethodDelete, status: 405},
		{name: "POST on a user", method: http.MethodPost + " /users/1", body: valid(""), status: 405},
		{name: "GET of an id past the int4 column", method: http.MethodGet + " /users/2147483648", status: 404},
		{name: "GET of the largest int64 id", method: http.MethodGet + " /users/9223372036854775807", status: 404},
		{name: "GET of an id past int64", method: http.MethodGet + " /users/99999999999999999999", status: 404},
	}
	if len(tests) < 30 {
		t.Fatalf("only %d bad inputs", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, path := http.MethodPost, "/users"
			if tc.method != "" {
				method, path, _ = strings.Cut(tc.method+" /users", " ")
				path = strings.Fields(path)[0]
			}
			ct := "application/json"
			switch tc.contentType {
			case "-":
				ct = ""
			case "":
			default:
				ct = tc.contentType
			}
			ta.remember(tc.body)
			resp := ta.do(method, path, ct, []byte(tc.body))
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			p := resp.json(t)
			if p["status"] != float64(tc.status) || p["title"] == "" || p["type"] == "" {
				t.Errorf("problem body %s lacks status/title/type", resp.body)
			}
			if tc.field != "" && !namesField(p, tc.field) {
				t.Errorf("problem does not name field %q: %s", tc.field, resp.body)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
	if after := ta.userCount(); after != before {
		t.Errorf("users went from %d to %d rows after bad requests", before, after)
	}
}

func TestCreateUserNamesEveryBadFieldAtOnce(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	resp := ta.post(`{"username":"","country_code":"XX","created_at":"nope","is_a_dog":1,"extra":0}`)
	if resp.status != http.StatusBadRequest {
		t.Fatalf("status %d", resp.status)
	}
	p := resp.json(t)
	for _, f := range []string{"username", "country_code", "created_at", "is_a_dog", "extra"} {
		if !namesField(p, f) {
			t.Errorf("problem does not name %q: %s", f, resp.body)
		}
	}
}

func namesField(problem map[string]any, field string) bool {
	params, _ := problem["invalid_params"].([]any)
	for _, p := range params {
		if m, ok := p.(map[string]any); ok && m["name"] == field {
			return true
		}
	}
	return false
}

func TestConcurrentCreatesWithCollidingUsernamesGiveOne201PerName(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	const total, colliding = 200, 20
	// 20 usernames are each sent twice (40 requests); the other 160 are unique.
	bodies := make([]string, 0, total)
	for i := 0; i < colliding; i++ {
		for range 2 {
			bodies = append(bodies, fmt.Sprintf(`{"username":"shared-%03d","country_code":"DE","created_at":"2021-03-04 05:06:07"}`, i))
		}
	}
	for i := len(bodies); i < total; i++ {
		bodies = append(bodies, fmt.Sprintf(`{"username":"unique-%03d","country_code":"NL","created_at":"2021-03-04 05:06:07"}`, i))
	}
	statuses := make([]int, total)
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ta.remember(b)
			resp, err := http.Post(ta.base+"/users", "application/json", strings.NewReader(b))
			if err != nil {
				return // status 0 is reported below, from the test's goroutine
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[201] != total-colliding || counts[409] != colliding || len(counts) != 2 {
		t.Errorf("statuses %v, want %d×201 and %d×409", counts, total-colliding, colliding)
	}
	if n := ta.userCount(); n != total-colliding {
		t.Errorf("%d rows, want %d", n, total-colliding)
	}
}

func TestEveryResponseCarriesARequestID(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"a well-formed id is echoed", "abc-123_X.y", true},
		{"a missing id is generated", "", false},
		{"an id with spaces is replaced", "bad id", false},
		{"an id of 65 characters is replaced", strings.Repeat("a", 65), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.sent != "" {
				header = []string{"X-Request-Id", tc.sent}
			}
			resp := ta.do(http.MethodGet, "/healthz", "", nil, header...)
			got := resp.header.Get("X-Request-Id")
			if tc.echoed != (got == tc.sent) || got == "" {
				t.Errorf("sent %q, got %q", tc.sent, got)
			}
		})
	}
}

func TestGetUserAnswers404ForUnknownOrMalformedIDs(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	for _, path := range []string{"/users/999999", "/users/2147483647", "/users/2147483648", "/users/9223372036854775807",
		"/users/abc", "/users/-1", "/users/0", "/users/99999999999999999999", "/nowhere"} {
		if resp := ta.do(http.MethodGet, path, "", nil); resp.status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.status)
		}
	}
}

func TestHealthAndReadinessAndMetricsAnswer(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	ta.post(`{"username":"metrics-user","country_code":"BE","created_at":"2021-01-01 00:00:00"}`)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp := ta.do(http.MethodGet, path, "", nil); resp.status != http.StatusOK {
			t.Errorf("GET %s = %d", path, resp.status)
		}
	}
	m := ta.do(http.MethodGet, "/metrics", "", nil)
	if !strings.Contains(string(m.body), `userstream_api_requests_total{method="POST",route="POST /users",status="201"} 1`) {
		t.Errorf("metrics lack the POST /users 201 counter:\n%s", m.body)
	}
}

func TestMadeUpMethodsShareOneMetricLabelInsteadOfMakingSeries(t *testing.T) {
	t.Parallel()
	ta := startAPI(t, testenv.Postgres(t))
	for i := range 20 {
		ta.do(fmt.Sprintf("BREW%d", i), "/users/1", "", nil)
	}
	m := string(ta.do(http.MethodGet, "/metrics", "", nil).body)
	if strings.Contains(m, `method="BREW`) {
		t.Fatalf("a made-up method became a metric label:\n%s", m)
	}
	if !strings.Contains(m, `method="other"`) {
		t.Fatalf("made-up methods are not counted as other:\n%s", m)
	}
}
