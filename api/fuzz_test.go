package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/userdb"
)

// acceptingStore stands in for the database in the fuzz test, which checks
// decoding and validation only.
type acceptingStore struct{}

func (acceptingStore) Create(_ context.Context, u userdb.NewUser) (userdb.User, error) {
	return userdb.User{ID: 1, Username: u.Username, CountryCode: u.CountryCode, CreatedAt: u.CreatedAt, IsADog: u.IsADog}, nil
}
func (acceptingStore) Get(context.Context, int64) (userdb.User, error) {
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
