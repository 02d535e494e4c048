package lake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "gocloud.dev/blob/s3blob" // the programs link every driver (lake/objectstores); S3 is the one tested

	"github.com/userstream/userstream/internal/lakeaudit"
	"github.com/userstream/userstream/internal/testenv"
	"github.com/userstream/userstream/lake"
)

func openS3(t *testing.T, url string) *lake.Lake {
	t.Helper()
	l, err := lake.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func keysOf(t *testing.T, s lakeaudit.Store, topic string) []string {
	t.Helper()
	objs, err := s.Objects(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range objs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestTwoLakesUnderTwoPrefixesOfOneBucketNeverSeeEachOthersFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testenv.S3(t)
	prod, staging := openS3(t, b.URL("prod")), openS3(t, b.URL("team/staging/"))
	key := lake.FileName{Topic: "users.created", Date: "2024-05-06", Partition: 0, First: 0, Last: 9}.Key()
	if _, err := prod.Put(ctx, key, strings.NewReader("prod's file")); err != nil {
		t.Fatal(err)
	}
	// The same name in the other lake is another object, not a conflict.
	if _, err := staging.Put(ctx, key, strings.NewReader("staging's file")); err != nil {
		t.Fatalf("the same name under another prefix: %v", err)
	}
	for _, c := range []struct {
		l      *lake.Lake
		prefix string
		want   string
	}{{prod, "prod", "prod's file"}, {staging, "team/staging", "staging's file"}} {
		objs, err := c.l.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || objs[0].Key != key {
			t.Errorf("%s lists %v, want only %s", c.prefix, objs, key)
		}
		// Read with another client: the object sits under the prefix.
		got, ok := lakeaudit.S3{Endpoint: b.Endpoint, AccessKey: testenv.S3AccessKey, SecretKey: testenv.S3SecretKey, Bucket: b.Name, Prefix: c.prefix}.Read(key)
		if !ok || string(got) != c.want {
			t.Errorf("s3://%s/%s/%s holds %q, %v; want %q", b.Name, c.prefix, key, got, ok, c.want)
		}
	}
	root := lakeaudit.S3{Endpoint: b.Endpoint, AccessKey: testenv.S3AccessKey, SecretKey: testenv.S3SecretKey, Bucket: b.Name}
	if got := keysOf(t, root, "users.created"); len(got) != 0 {
		t.Errorf("the bucket's root holds %v, want nothing outside the prefixes", got)
	}
}

func TestOnS3ANameIsWrittenOnceAndOnlyTheSameBytesMayBePutAgainEvenInParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testenv.S3(t)
	// Through a proxy that counts multipart uploads begun (POST ?uploads).
	var multipart atomic.Int64
	counted := testenv.S3Proxy(t, b.Endpoint, func(_ int64, r *http.Request) (time.Duration, bool) {
		if r.Method == http.MethodPost && r.URL.Query().Has("uploads") {
			multipart.Add(1)
		}
		return 0, false
	})
	l := openS3(t, testenv.Bucket{Endpoint: counted, Name: b.Name}.URL("lake"))
	for _, c := range []struct {
		size  int
		parts bool
	}{{100, false}, {24 << 20, true}} { // one request, and an upload in 8 MiB parts
		before := multipart.Load()
		key := fmt.Sprintf("t/event_date=2024-05-06/t+0+%020d+%020d.parquet", c.size, c.size)
		data := bytes.Repeat([]byte("a"), c.size)
		if n, err := l.Put(ctx, key, bytes.NewReader(data)); err != nil || n != int64(c.size) {
			t.Fatalf("%d bytes: put %d, %v", c.size, n, err)
		}
		if got := multipart.Load() > before; got != c.parts {
			t.Fatalf("%d bytes: uploaded in parts %v, want %v", c.size, got, c.parts)
		}
		if _, err := l.Put(ctx, key, bytes.NewReader(data)); err != nil {
			t.Errorf("%d bytes: a replay with the same bytes: %v", c.size, err)
		}
		other := bytes.Repeat([]byte("b"), c.size)
		if _, err := l.Put(ctx, key, bytes.NewReader(other)); !errors.Is(err, lake.ErrDifferentContent) {
			t.Errorf("%d bytes: other bytes under the same name: %v, want ErrDifferentContent", c.size, err)
		}
		if got, err := l.ReadAll(ctx, key); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%d bytes: the stored object changed (%d bytes, %v)", c.size, len(got), err)
		}
	}
}

func TestAListingOfMoreFilesThanOnePageReturnsThemAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testenv.S3(t)
	l := openS3(t, b.URL("many"))
	const n = 1003 // S3 lists at most 1,000 keys a page
	for i := range n {
		key := lake.FileName{Topic: "t", Date: "2024-05-06", Partition: 0, First: int64(i), Last: int64(i)}.Key()
		if _, err := l.Put(ctx, key, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := l.List(ctx, lake.TopicPrefix("t"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != n {
		t.Errorf("listed %d of %d files", len(objs), n)
	}
}

func TestPutsAndListingsRideOutAServerThatAsksToSlowDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testenv.S3(t)
	// Every other request is answered 503 SlowDown, as S3 does under load.
	var refused atomic.Int64
	proxied := testenv.S3Proxy(t, b.Endpoint, func(n int64, _ *http.Request) (time.Duration, bool) {
		if n%2 == 1 {
			refused.Add(1)
			return 0, true
		}
		return 0, false
	})
	l := openS3(t, testenv.Bucket{Endpoint: proxied, Name: b.Name}.URL("slow"))
	key := lake.FileName{Topic: "t", Date: "2024-05-06", Partition: 0, First: 0, Last: 0}.Key()
	if _, err := l.Put(ctx, key, strings.NewReader("whole")); err != nil {
		t.Fatalf("put through 503s: %v", err)
	}
	if _, err := l.Put(ctx, key, strings.NewReader("other")); !errors.Is(err, lake.ErrDifferentContent) {
		t.Errorf("a conflicting put through 503s: %v, want ErrDifferentContent", err)
	}
	objs, err := l.List(ctx, "")
	if err != nil || len(objs) != 1 {
		t.Errorf("list through 503s: %v, %v", objs, err)
	}
	if refused.Load() == 0 {
		t.Fatal("the proxy refused nothing: the test proves nothing")
	}
}

func TestAMirrorFetchesEachFileOnceAndForgetsFilesGoneFromTheLake(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testenv.S3(t)
	l := openS3(t, b.URL("mirrored"))
	name := func(first int64) string {
		return lake.FileName{Topic: "users.created", Date: "2024-05-06", Partition: 0, First: first, Last: first}.Key()
	}
	for _, k := range []string{name(0), name(1), "users.created/notes.txt"} {
		if _, err := l.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if n, err := l.Mirror(ctx, "users.created", dir); err != nil || n != 2 {
		t.Fatalf("first mirror: %d files, %v; want 2 (files of the layout only)", n, err)
	}
	if n, err := l.Mirror(ctx, "users.created", dir); err != nil || n != 0 {
		t.Errorf("second mirror: %d files fetched, %v; want 0 (files never change)", n, err)
	}
	if err := l.Delete(ctx, name(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Mirror(ctx, "users.created", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name(0)))); !os.IsNotExist(err) {
		t.Errorf("a file gone from the lake is still in the mirror: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name(1)))); err != nil || string(got) != name(1) {
		t.Errorf("mirrored %s: %q, %v", name(1), got, err)
	}
}
