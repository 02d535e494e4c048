package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The one identity of the test S3 servers (scripts/lib.sh s3_start).
const (
	S3AccessKey = "userstream-test"
	S3SecretKey = "userstream-test-secret"
	envS3       = "USERSTREAM_TEST_S3"
)

// S3Env is the environment the AWS SDK takes the test servers' credentials
// from, as a program in production takes its own.
func S3Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + S3AccessKey, "AWS_SECRET_ACCESS_KEY=" + S3SecretKey, "AWS_EC2_METADATA_DISABLED=true"}
}

var (
	s3Once  sync.Once
	s3Ready error
)

// Bucket is an S3 bucket of a test's own on a SeaweedFS server.
type Bucket struct {
	Endpoint string // host:port, plain HTTP
	Name     string
}

// URL is the lake URL of prefix in the bucket, in the form the archiver
// and lakequery take ("" for the bucket's root).
func (b Bucket) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=http://%s&use_path_style=true&region=us-east-1", b.Name, prefix, b.Endpoint)
}

// S3 makes a bucket on the shared S3 server that make test starts, and
// puts its credentials into this process's environment (for archivers run
// in the test process).
func S3(t testing.TB) Bucket {
	t.Helper()
	endpoint := mustEnv(t, envS3)
	s3Once.Do(func() {
		for _, kv := range S3Env() {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		s3Ready = WaitS3(endpoint, time.Minute)
	})
	if s3Ready != nil {
		t.Fatalf("testenv: %v", s3Ready)
	}
	return makeBucket(t, endpoint)
}

func s3Client(endpoint string) (*minio.Client, error) {
	return minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(S3AccessKey, S3SecretKey, ""), Region: "us-east-1"})
}

func makeBucket(t testing.TB, endpoint string) Bucket {
	t.Helper()
	b := Bucket{Endpoint: endpoint, Name: strings.ReplaceAll(Name(t, "lake"), "_", "-")}
	c, err := s3Client(endpoint)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, b.Name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("testenv: make bucket %s: %v", b.Name, err)
	}
	return b
}

// S3Server is a private SeaweedFS server a test may kill, stop and start,
// started with the same script as make test's.
type S3Server struct {
	dir     string
	port    int
	pid     int
	started bool     // once: its S3 port is kept from then on
	buckets []string // made on it: a restart must find them, not another test's server on the port
}

// NewS3Server starts a private S3 server; it is killed when the test ends.
func NewS3Server(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{dir: t.TempDir()}
	t.Cleanup(s.Kill)
	s.Start(t)
	return s
}

// Endpoint is the server's S3 address, host:port.
func (s *S3Server) Endpoint() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Bucket makes a bucket on the server.
func (s *S3Server) Bucket(t testing.TB) Bucket {
	t.Helper()
	b := makeBucket(t, s.Endpoint())
	s.buckets = append(s.buckets, b.Name)
	return b
}

// Start starts the server, on its previous S3 port and data if it ran
// before, and waits until it takes a put. Its other components take free
// ports each time; a start that loses a port to another process is tried
// again.
func (s *S3Server) Start(t testing.TB) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = s.start(); err == nil {
			s.started = true
			return
		}
		s.Kill()
		if !s.started {
			s.port = 0 // perhaps the S3 port itself was taken
		}
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "weed.log"))
	t.Fatalf("testenv: %v\n%s", err, log)
}

func (s *S3Server) start() error {
	port := ""
	if s.port != 0 {
		port = strconv.Itoa(s.port)
	}
	cmd := exec.Command("bash", "-c", ". scripts/lib.sh; s3_start "+shellQuote(s.dir)+" "+port)
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("start the S3 server: %w", err)
	}
	if _, err := fmt.Sscan(string(out), &s.pid, &s.port); err != nil {
		return fmt.Errorf("start the S3 server: %q: %w", out, err)
	}
	if err := waitS3(s.Endpoint(), time.Minute, func() bool { return syscall.Kill(s.pid, 0) == nil }); err != nil {
		return err
	}
	if len(s.buckets) > 0 {
		c, err := s3Client(s.Endpoint())
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ok, err := c.BucketExists(ctx, s.buckets[0]); err != nil || !ok {
			return fmt.Errorf("the server on %s after the restart is not this one (bucket %s: %v, %v)", s.Endpoint(), s.buckets[0], ok, err)
		}
	}
	return nil
}

// Kill ends the server with SIGKILL, as a crash would (idempotent).
func (s *S3Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop ends the server with SIGTERM and waits for it to exit, killing it
// after 15 s.
func (s *S3Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *S3Server) signal(sig syscall.Signal) {
	if s.pid == 0 {
		return
	}
	_ = syscall.Kill(s.pid, sig)
	// At most 30 s: an exited server nobody reaped yet still answers.
	for i := 0; i < 600 && syscall.Kill(s.pid, 0) == nil; i++ {
		if i == 300 {
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.pid = 0
	// SeaweedFS makes its gRPC sockets in /tmp (s3_start lists them).
	if list, err := os.ReadFile(filepath.Join(s.dir, "sockets")); err == nil {
		for _, sock := range strings.Fields(string(list)) {
			os.Remove(sock)
		}
	}
}

// WaitS3 waits until the S3 server at endpoint stores an object: its port
// opens before its volumes take writes.
func WaitS3(endpoint string, timeout time.Duration) error {
	return waitS3(endpoint, timeout, func() bool { return true })
}

// waitS3 is WaitS3 that gives up at once when alive says the server died.
func waitS3(endpoint string, timeout time.Duration, alive func() bool) error {
	c, err := s3Client(endpoint)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.MakeBucket(ctx, "testenv-ready", minio.MakeBucketOptions{Region: "us-east-1"})
		if err == nil || minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" || minio.ToErrorResponse(err).Code == "BucketAlreadyExists" {
			_, err = c.PutObject(ctx, "testenv-ready", "probe", bytes.NewReader([]byte("ok")), 2, minio.PutObjectOptions{})
		}
		cancel()
		if err == nil {
			return nil
		}
		if !alive() {
			return fmt.Errorf("the S3 server at %s exited: %w", endpoint, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the S3 server at %s took no put within %s: %w", endpoint, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// S3Fault says what a proxy does to the nth request (from 1) before
// passing it on: wait this long, or answer 503 SlowDown instead.
type S3Fault func(n int64, r *http.Request) (wait time.Duration, slowDown bool)

// S3Proxy puts a proxy with faults in front of the S3 server at endpoint
// and returns its address (host:port). Signed requests stay valid: the
// proxy keeps the Host header the client signed.
func S3Proxy(t testing.TB, endpoint string, fault S3Fault) string {
	t.Helper()
	target, err := url.Parse("http://" + endpoint)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, slowDown := fault(n.Add(1), r)
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		if slowDown {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
