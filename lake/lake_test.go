package lake_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userstream/userstream/lake"
)

func open(t *testing.T) (*lake.Lake, string) {
	t.Helper()
	root := t.TempDir()
	l, err := lake.Open(context.Background(), "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, root
}

func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out = append(out, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	return out
}

func TestANameIsWrittenOnceAndOnlyTheSameBytesMayBePutAgain(t *testing.T) {
	ctx := context.Background()
	l, root := open(t)
	key := "t/event_date=2024-05-06/t+0+1+2.parquet"
	if n, err := l.Put(ctx, key, strings.NewReader("first")); err != nil || n != 5 {
		t.Fatalf("put: %d, %v", n, err)
	}
	if _, err := l.Put(ctx, key, strings.NewReader("first")); err != nil {
		t.Fatalf("a replay with the same bytes: %v", err)
	}
	if _, err := l.Put(ctx, key, strings.NewReader("other")); !errors.Is(err, lake.ErrDifferentContent) {
		t.Fatalf("other bytes under the same name: %v, want ErrDifferentContent", err)
	}
	got, err := l.ReadAll(ctx, key)
	if err != nil || string(got) != "first" {
		t.Fatalf("content %q, %v; want the first put's", got, err)
	}
	if fs := files(t, root); len(fs) != 1 {
		t.Errorf("files %v, want only the object (no sidecar, no temporary file)", fs)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n--
		return copy(p, bytes.Repeat([]byte("x"), len(p))), nil
	}
	return 0, io.ErrUnexpectedEOF
}

func TestAPutThatFailsHalfwayLeavesNothingBehind(t *testing.T) {
	l, root := open(t)
	if _, err := l.Put(context.Background(), "t/d/half.parquet", &failingReader{n: 3}); err == nil {
		t.Fatal("want the reader's error")
	}
	if fs := files(t, root); len(fs) != 0 {
		t.Errorf("a failed put left %v", fs)
	}
}

func TestARelativeFileURLIsUnderTheWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	l, err := lake.Open(context.Background(), "file://.data/lake")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if want := filepath.Join(dir, ".data", "lake"); l.LocalRoot() != want {
		t.Errorf("root %q, want %q", l.LocalRoot(), want)
	}
	if _, err := os.Stat(l.LocalRoot()); err != nil {
		t.Errorf("the folder was not made: %v", err)
	}
}

func TestALakeURLIsDescribedWithoutCredentialsOrQuery(t *testing.T) {
	got := lake.Describe("s3://key:secret@bucket/prefix?region=eu-west-1&awssdk=v2")
	if got != "s3://bucket/prefix" {
		t.Errorf("described as %q", got)
	}
}

func TestALakeURLTheArchiverCannotHonourIsRefusedSayingWhy(t *testing.T) {
	for u, why := range map[string]string{
		"":                            "not a URL",
		"/var/lake":                   "not a URL",
		"file://":                     "names no folder",
		"file:///var/lake?prefix=x/":  "no query parameters",
		"s3:///prod":                  "no bucket",
		"s3://bucket/prod?prefix=x/":  "as the URL's path",
		"s3://bucket/prod?key=a":      "not one key",
		"s3://KEY:SECRET@bucket/prod": "credentials do not belong",
		"gs://bucket/a//b":            "empty, . or .. segment",
		"azblob://container/../other": "empty, . or .. segment",
		"mem://":                      "not one of file, s3, gs, azblob",
		"ftp://host/lake":             "not one of file, s3, gs, azblob",
	} {
		_, err := lake.Open(context.Background(), u)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Open(%q): %v, want an error saying %q", u, err, why)
		}
	}
}

// blockingReader hands out its bytes, then waits for release: a put that
// is still writing when another one of the same name ends.
type blockingReader struct {
	data    []byte
	release chan struct{}
	read    bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if !r.read {
		r.read = true
		return copy(p, r.data), nil
	}
	<-r.release
	return 0, io.EOF
}

func TestTwoWritersOfOneNameNeverReplaceAVisibleFileAndTheirTemporaryFileIsHidden(t *testing.T) {
	ctx := context.Background()
	l, root := open(t)
	key := "t/event_date=2024-05-06/t+0+1+2.parquet"
	slow := &blockingReader{data: []byte("second writer"), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { _, err := l.Put(ctx, key, slow); done <- err }()
	// While the slow put is half written, its temporary file is hidden from
	// readers that open the folder: a leading dot.
	var hidden []string
	for range 100 {
		if hidden = files(t, root); len(hidden) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(hidden) != 1 || !strings.HasPrefix(filepath.Base(hidden[0]), ".") || strings.HasSuffix(hidden[0], ".parquet") {
		t.Fatalf("files while a put is under way: %v, want one hidden temporary file", hidden)
	}
	if _, err := l.Put(ctx, key, strings.NewReader("first writer")); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	if err := <-done; !errors.Is(err, lake.ErrDifferentContent) {
		t.Fatalf("the second writer: %v, want ErrDifferentContent", err)
	}
	if got, err := l.ReadAll(ctx, key); err != nil || string(got) != "first writer" {
		t.Fatalf("content %q, %v; the visible file was replaced", got, err)
	}
	if fs := files(t, root); len(fs) != 1 {
		t.Errorf("files %v, want only the object", fs)
	}
}
