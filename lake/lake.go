// Package lake stores immutable files under a root given as a URL, through
// gocloud.dev/blob: file://, s3://, gs:// and azblob:// share this one code
// path. A file becomes visible only whole: it is written under a temporary
// name (file://: next to its final name, ending in .tmp, which no *.parquet
// glob matches) and then, for file://, fsynced and renamed with its folder
// fsynced; object stores publish an object only when its upload completes.
// Every put is conditional (if-none-match), so a name is never overwritten.
package lake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	// The drivers for every URL scheme the lake accepts.
	_ "gocloud.dev/blob/fileblob"
)

// ErrDifferentContent means a name already holds other bytes than the ones
// being put: something broke the one-name-one-content rule.
var ErrDifferentContent = errors.New("a different file already has this name")

// Lake is an open lake root.
type Lake struct {
	bucket *blob.Bucket
	local  string // the root folder for file:// lakes, "" otherwise
}

// Schemes are the lake URL schemes Open accepts.
var Schemes = []string{"file", "s3", "gs", "azblob"}

// Open opens the lake at rawURL. For file:// (file:///abs/path, or
// file://rel/path relative to the working directory) the folder is created when
// missing, no attribute sidecar files are written and temporary files are
// made next to their final name (so the rename never crosses a device). For
// s3://bucket/prefix, gs://bucket/prefix and azblob://container/prefix the
// path after the bucket is a key prefix: two lakes under two prefixes of one
// bucket never see each other's files. Any other form is refused.
func Open(ctx context.Context, rawURL string) (*Lake, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("open lake: %s is not a URL such as file:///var/lake or s3://bucket/prefix", Describe(rawURL))
	}
	if u.User != nil {
		return nil, fmt.Errorf("open lake %s: credentials do not belong in LAKE_URL; give them through the cloud's environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*)", Describe(rawURL))
	}
	l := &Lake{}
	switch u.Scheme {
	case "file":
		if u, err = l.openLocal(u, rawURL); err != nil {
			return nil, err
		}
	case "s3", "gs", "azblob":
		if u, err = withPrefix(u); err != nil {
			return nil, fmt.Errorf("open lake %s: %w", Describe(rawURL), err)
		}
	default:
		return nil, fmt.Errorf("open lake %s: the scheme %q is not one of %s", Describe(rawURL), u.Scheme, strings.Join(Schemes, ", "))
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open lake %s: %w", Describe(rawURL), err)
	}
	l.bucket = b
	return l, nil
}

// openLocal checks a file:// URL, makes its folder and returns the URL
// fileblob is opened with.
func (l *Lake) openLocal(u *url.URL, rawURL string) (*url.URL, error) {
	// file:///abs/path, or file://rel/path and file://./rel/path for a
	// folder relative to the working directory.
	local := u.Path
	if u.Host != "" && u.Host != "localhost" {
		local = u.Host + u.Path
	}
	if local == "" {
		return nil, fmt.Errorf("open lake: %s names no folder", Describe(rawURL))
	}
	if len(u.Query()) > 0 {
		return nil, fmt.Errorf("open lake %s: a file:// lake takes no query parameters", Describe(rawURL))
	}
	var err error
	if l.local, err = filepath.Abs(local); err != nil {
		return nil, fmt.Errorf("open lake: %w", err)
	}
	if err := os.MkdirAll(l.local, 0o755); err != nil {
		return nil, fmt.Errorf("open lake: %w", err)
	}
	q := url.Values{}
	q.Set("metadata", "skip")
	q.Set("no_tmp_dir", "true")
	return &url.URL{Scheme: "file", Path: filepath.ToSlash(l.local), RawQuery: q.Encode()}, nil
}

// withPrefix turns the path of an object-store URL into gocloud's prefix
// parameter: its drivers open the bucket named by the host and would
// otherwise ignore the path.
func withPrefix(u *url.URL) (*url.URL, error) {
	if u.Host == "" {
		return nil, errors.New("no bucket named: write s3://bucket/prefix (or gs://, azblob://)")
	}
	q := u.Query()
	if q.Has("prefix") {
		return nil, errors.New("give the prefix as the URL's path (s3://bucket/prefix), not as ?prefix=")
	}
	if q.Has("key") {
		return nil, errors.New("a lake is a bucket and prefix, not one key (?key=)")
	}
	prefix := strings.Trim(u.Path, "/")
	for _, seg := range strings.Split(prefix, "/") {
		if prefix != "" && (seg == "" || seg == "." || seg == "..") {
			return nil, fmt.Errorf("the prefix %q has an empty, . or .. segment", prefix)
		}
	}
	if prefix != "" {
		q.Set("prefix", prefix+"/")
	}
	out := *u
	out.Path, out.RawPath, out.RawQuery = "", "", q.Encode()
	return &out, nil
}

// Close releases the bucket.
func (l *Lake) Close() error { return l.bucket.Close() }

// LocalRoot is the root folder of a file:// lake ("" for object stores).
func (l *Lake) LocalRoot() string { return l.local }

// Put stores the bytes of src under key, once: the object appears whole or
// not at all, and, for file://, durably (file and folder fsynced). When the
// name already exists (a replay after a crash between the put and the offset
// commit), Put succeeds only if the existing bytes are the same, and
// otherwise returns ErrDifferentContent. It returns the bytes stored.
func (l *Lake) Put(ctx context.Context, key string, src io.Reader) (int64, error) {
	if l.local != "" {
		return l.putLocal(ctx, key, src)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var osf *os.File
	w, err := l.bucket.NewWriter(wctx, key, &blob.WriterOptions{
		ContentType: "application/vnd.apache.parquet",
		IfNotExist:  true,
		// Object stores upload large files in parts held in memory: two
		// parts of 8 MiB at once per put bound that to 16 MiB a put.
		BufferSize:     8 << 20,
		MaxConcurrency: 2,
		BeforeWrite: func(as func(any) bool) error {
			as(&osf) // file:// only: the temporary file, to fsync before the rename
			return nil
		},
	})
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), src)
	if err == nil && osf != nil {
		// With a content type given, blob.Writer hands every write straight
		// to the file: make it durable before the rename makes it visible.
		err = osf.Sync()
	}
	if err != nil {
		cancel() // a cancelled writer removes its temporary data
		_ = w.Close()
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	err = w.Close()
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return n, l.sameAs(ctx, key, sum.Sum(nil))
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if l.local != "" {
		if err := syncDir(filepath.Dir(filepath.Join(l.local, filepath.FromSlash(key)))); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// putLocal is Put for file:// lakes, by hand rather than through fileblob,
// whose "if not exist" is a check then a rename that replaces: two writers
// of one name could both pass it. The bytes go to a hidden temporary file
// (a leading dot: pyarrow, Spark and Hive skip it, as does any *.parquet
// glob), fsynced, then hard-linked to the final name, which fails if the
// name exists: a visible file is never replaced.
func (l *Lake) putLocal(ctx context.Context, key string, src io.Reader) (int64, error) {
	final := filepath.Join(l.local, filepath.FromSlash(key))
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(dir, tempPattern(filepath.Base(final)))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	defer os.Remove(tmp.Name()) // after the link, or after a failure
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	err = os.Link(tmp.Name(), final)
	if errors.Is(err, fs.ErrExist) {
		return n, l.sameAs(ctx, key, sum.Sum(nil))
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	// Every folder from the file's up to the lake root's parent: a folder
	// made for this file must survive a power loss too, or the file would
	// vanish while its offset commit survived.
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			return 0, err
		}
		if d == l.local || d == filepath.Dir(d) {
			return n, nil
		}
	}
}

func (l *Lake) sameAs(ctx context.Context, key string, want []byte) error {
	r, err := l.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return fmt.Errorf("read existing %s: %w", key, err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("read existing %s: %w", key, err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("put %s: %w", key, ErrDifferentContent)
	}
	return nil
}

// syncDir fsyncs a folder and its parent, so a rename and a newly made
// folder survive a power loss.
func syncDir(dir string) error {
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fd, err := os.Open(d)
		if err != nil {
			return fmt.Errorf("fsync folder: %w", err)
		}
		err = fd.Sync()
		fd.Close()
		if err != nil {
			return fmt.Errorf("fsync folder %s: %w", d, err)
		}
	}
	return nil
}

// Object is a stored file.
type Object struct {
	Key  string
	Size int64
}

// List returns every object under prefix, in key order, including leftover
// temporary files (the caller decides what its names mean).
func (l *Lake) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	it := l.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		out = append(out, Object{Key: o.Key, Size: o.Size})
	}
}

// Delete removes key; a missing key is not an error.
func (l *Lake) Delete(ctx context.Context, key string) error {
	if err := l.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// ReadAll returns the bytes of key.
func (l *Lake) ReadAll(ctx context.Context, key string) ([]byte, error) {
	b, err := l.bucket.ReadAll(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

// Describe is a lake URL fit for logs: scheme, host and path, without
// credentials or query parameters (which may carry keys).
func Describe(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
