package pgdsn_test

import (
	"strings"
	"testing"

	"github.com/userstream/userstream/internal/pgdsn"
)

func TestDescribeNeverShowsThePassword(t *testing.T) {
	tests := []struct {
		dsn, want string
	}{
		{"postgres://api:s3cret-pw@db.internal:6432/users?sslmode=require", "api@db.internal:6432/users"},
		{"host=127.0.0.1 port=5432 user=streamer password=s3cret-pw dbname=userstream", "streamer@127.0.0.1:5432/userstream"},
		{"postgres://api:s3cret-pw@[bad", "unparsable DSN"},
		{"postgres://streamer:s3cret-pw@pg-a:5432,pg-b:5433/userstream?target_session_attrs=read-write", "streamer@pg-a:5432,pg-b:5433/userstream"},
	}
	for _, tc := range tests {
		got := pgdsn.Describe(tc.dsn)
		if got != tc.want {
			t.Errorf("Describe(…) = %q, want %q", got, tc.want)
		}
		if strings.Contains(got, "s3cret-pw") {
			t.Errorf("Describe(…) = %q leaks the password", got)
		}
	}
}
