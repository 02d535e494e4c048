package lakeaudit

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Store is a lake as the audit reads it, with clients of its own: a folder
// read with the os package, or an S3 bucket and prefix read with minio-go
// (the archiver writes through gocloud.dev and the AWS SDK).
type Store interface {
	// Objects lists every object under topic's folder: its key, relative
	// to the lake's root, and a stamp that changes whenever its bytes could.
	Objects(topic string) (map[string]string, error)
	// Read returns an object's bytes, or false when it is gone.
	Read(key string) ([]byte, bool)
	// Local returns a folder holding the topic's files now, for DuckDB.
	Local(t testing.TB, topic string) string
}

// Dir is a file:// lake's root folder.
type Dir string

// Objects implements Store.
func (d Dir) Objects(topic string) (map[string]string, error) {
	out := map[string]string{}
	root := string(d)
	err := filepath.WalkDir(filepath.Join(root, topic), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return nil // removed under us: a temporary file renamed away
		}
		var ino uint64
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		out[filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))] = fmt.Sprint(info.Size(), info.ModTime().UnixNano(), ino)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return out, nil
}

// Read implements Store.
func (d Dir) Read(key string) ([]byte, bool) {
	b, err := os.ReadFile(filepath.Join(string(d), filepath.FromSlash(key)))
	return b, err == nil
}

// Local implements Store.
func (d Dir) Local(testing.TB, string) string { return string(d) }

// S3 is a lake in an S3 bucket under a prefix.
type S3 struct {
	Endpoint, AccessKey, SecretKey string // host:port, plain HTTP
	Bucket, Prefix                 string // Prefix without a trailing slash ("" for the bucket's root)
}

func (s S3) client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1"})
}

func (s S3) key(rel string) string {
	if s.Prefix == "" {
		return rel
	}
	return s.Prefix + "/" + rel
}

// Objects implements Store.
func (s S3) Objects(topic string) (map[string]string, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for o := range c.ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Prefix: s.key(topic + "/"), Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, s.key(topic+"/"), o.Err)
		}
		rel := o.Key
		if s.Prefix != "" {
			rel = strings.TrimPrefix(o.Key, s.Prefix+"/")
		}
		out[rel] = fmt.Sprint(o.ETag, o.Size, o.LastModified.UnixNano())
	}
	return out, nil
}

// Read implements Store.
func (s S3) Read(key string) ([]byte, bool) {
	c, err := s.client()
	if err != nil {
		return nil, false
	}
	o, err := c.GetObject(context.Background(), s.Bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, false
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	return b, err == nil
}

// Local implements Store: every Parquet object of topic, copied into a new
// temporary folder.
func (s S3) Local(t testing.TB, topic string) string {
	t.Helper()
	dir := t.TempDir()
	objs, err := s.Objects(topic)
	if err != nil {
		t.Fatal(err)
	}
	for key := range objs {
		if !strings.HasSuffix(key, ".parquet") {
			continue
		}
		b, ok := s.Read(key)
		if !ok {
			t.Fatalf("read s3://%s/%s", s.Bucket, s.key(key))
		}
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
