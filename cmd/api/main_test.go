package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/internal/testenv"
)

func TestServeRefusesToStartWhenTheBuildVersionDoesNotFitTheColumn(t *testing.T) {
	saved := version
	version = "1.4.0-37-g0123456789abcdef" // a git describe: 26 characters
	t.Cleanup(func() { version = saved })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := NewMain().Run(ctx, []string{"serve", "--database-url", testenv.Postgres(t), "--listen-addr", "127.0.0.1:0"})
	if err == nil {
		t.Fatal("serve started with a version api_version cannot hold")
	}
	if !strings.Contains(err.Error(), "VERSION") || !strings.Contains(err.Error(), "at most 20") {
		t.Errorf("the error %q does not name VERSION and the column's width", err)
	}
}
