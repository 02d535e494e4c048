package lakeaudit

import (
	"crypto/sha256"
	"strings"
	"sync"
	"testing"
	"time"
)

// Watcher records the content of every file the moment it is first seen,
// and every time the readers' glob (*.parquet) matched something that is not
// a whole archiver file, while it runs.
type Watcher struct {
	store   Store
	topic   string
	mu      sync.Mutex
	seen    map[string][32]byte
	stamps  map[string]string
	changed []string
	bad     []string
	errs    int
	stop    chan struct{}
	done    chan struct{}
}

// Watch polls the lake every 20 ms (a folder) or 100 ms (an object store)
// until Stop.
func Watch(t testing.TB, s Store, topic string) *Watcher {
	w := &Watcher{store: s, topic: topic, seen: map[string][32]byte{}, stamps: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	every := 20 * time.Millisecond
	if _, local := s.(Dir); !local {
		every = 100 * time.Millisecond
	}
	go func() {
		defer close(w.done)
		for {
			w.scan()
			select {
			case <-w.stop:
				w.scan()
				return
			case <-time.After(every):
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func (w *Watcher) scan() {
	objs, err := w.store.Objects(w.topic)
	if err != nil {
		w.mu.Lock()
		w.errs++ // a store restarting under a fault: seen next time
		w.mu.Unlock()
		return
	}
	for key, st := range objs {
		if !strings.HasSuffix(key, ".parquet") {
			continue // a .tmp file is what readers never match
		}
		w.mu.Lock()
		same := w.stamps[key] == st
		w.mu.Unlock()
		if same {
			continue // same stamp: the bytes were hashed already
		}
		b, ok := w.store.Read(key)
		if !ok {
			continue // renamed or removed under us: seen next time
		}
		sum := sha256.Sum256(b)
		w.mu.Lock()
		if _, ok := parse(key); !ok || len(b) < 8 || string(b[:4]) != "PAR1" || string(b[len(b)-4:]) != "PAR1" {
			w.bad = append(w.bad, key)
		}
		if prev, ok := w.seen[key]; ok && prev != sum {
			w.changed = append(w.changed, key)
		}
		w.seen[key] = sum
		w.stamps[key] = st
		w.mu.Unlock()
	}
}

// Stop ends the watch (idempotent).
func (w *Watcher) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// Report says how many files were seen, which changed after they appeared,
// and which glob matches were not whole archiver files.
func (w *Watcher) Report() (seen int, changed, partial []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen), append([]string(nil), w.changed...), append([]string(nil), w.bad...)
}
