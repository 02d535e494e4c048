package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/userdb"
)

// acceptingStore stands in for the database in the fuzz tests, which check
// decoding and validation only. Like PostgreSQL, it refuses ids its int4
// column cannot hold with an error that is not "not found", so the fuzzer
// finds any id the API forgets to bound.
type acceptingStore struct{}

func (acceptingStore) Create(_ context.Context, u userdb.NewUser) (userdb.User, error) {
	return userdb.User{ID: 1, Username: u.Username, CountryCode: u.CountryCode, CreatedAt: u.CreatedAt, IsADog: u.IsADog}, nil
}
func (acceptingStore) Get(_ context.Context, id int64) (userdb.User, error) {
	if id < math.MinInt32 || id > math.MaxInt32 {
		return userdb.User{}, errors.New("value out of range for type integer (SQLSTATE 22003)")
	}
	return userdb.User{}, userdb.ErrNotFound
}
func (acceptingStore) Ping(context.Context) error { return nil }

func FuzzCreateUserNeverPanicsNorAnswers5xx(f *testing.F) {
	for _, seed := range []string{
		`{"username": "jtr", "country_code": "BE", "created_at": "2021-01-01 00:00:00"}`,
		`{"username":"a","country_code":"be","created_at":"2021-01-01T00:00:00+14:00","is_a_dog":true}`,
		`{"username":"\ud800","country_code":"ZZ","created_at":"2021-02-30 00:00:00"}`,
		`[]`, `null`, `{"a":1,"a":2}`, `{"username":"x"}garbage`, "{\"username\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	srv := NewServer(Config{}, acceptingStore{}, zerolog.New(io.Discard), prometheus.NewRegistry())
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/users", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		if rec.Code == http.StatusCreated {
			u, err := decodeNewUser(body)
			if err != nil {
				t.Fatalf("201 for a body the decoder refuses: %v", err)
			}
			if n := utf8.RuneCountInString(u.Username); n < 1 || n > maxUsernameChars || !utf8.ValidString(u.Username) {
				t.Fatalf("accepted username of %d characters, valid UTF-8 %v", n, utf8.ValidString(u.Username))
			}
			if len(u.CountryCode) != 2 || u.CreatedAt.Location().String() != "UTC" {
				t.Fatalf("accepted country %q, created_at %v", u.CountryCode, u.CreatedAt)
			}
		}
	})
}

func FuzzGetUserNeverPanicsNorAnswers5xx(f *testing.F) {
	for _, seed := range []string{"1", "2147483647", "2147483648", "9223372036854775807", "99999999999999999999", "-1", "0", "+5", "1e3", "0x10", " 1", "%00", "é"} {
		f.Add(seed)
	}
	srv := NewServer(Config{}, acceptingStore{}, zerolog.New(io.Discard), prometheus.NewRegistry())
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, id string) {
		req := httptest.NewRequest(http.MethodGet, "/users/x", nil)
		req.URL.Path = "/users/" + id
		req.URL.RawPath = "/users/" + url.PathEscape(id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for id %q: %s", rec.Code, id, rec.Body)
		}
	})
}
