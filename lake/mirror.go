package lake

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Mirror makes dir a copy of topic's files in the lake, for readers that
// read local files only (DuckDB without httpfs). Files are immutable, so a
// file already in dir is never fetched again; files gone from the lake are
// removed from dir; each new file appears in dir whole (written aside, then
// renamed). It returns the number of files fetched.
func (l *Lake) Mirror(ctx context.Context, topic, dir string) (int, error) {
	objs, err := l.List(ctx, TopicPrefix(topic))
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	fetched := 0
	for _, o := range objs {
		if _, ok := ParseKey(o.Key); !ok {
			continue // a temporary file or a stranger
		}
		local := filepath.Join(dir, filepath.FromSlash(o.Key))
		want[local] = true
		if st, err := os.Stat(local); err == nil && st.Size() == o.Size {
			continue
		}
		if err := l.fetch(ctx, o.Key, local); err != nil {
			return fetched, err
		}
		fetched++
	}
	err = filepath.WalkDir(filepath.Join(dir, topic), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || want[p] {
			return nil
		}
		return os.Remove(p)
	})
	if err != nil {
		return fetched, fmt.Errorf("mirror %s: %w", topic, err)
	}
	return fetched, nil
}

func (l *Lake) fetch(ctx context.Context, key, local string) error {
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return fmt.Errorf("mirror %s: %w", key, err)
	}
	r, err := l.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return fmt.Errorf("mirror %s: %w", key, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(filepath.Dir(local), tempPattern(filepath.Base(local)))
	if err != nil {
		return fmt.Errorf("mirror %s: %w", key, err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), local)
	}
	if err != nil {
		return fmt.Errorf("mirror %s: %w", key, err)
	}
	return nil
}
