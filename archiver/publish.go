package archiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/lake"
)

// maxUploads is how many files are put into the lake at once.
const maxUploads = 4

// upload is a finished file on its way into the lake, off the poll loop: a
// slow or unreachable store never keeps the loop from polling, so the group
// never takes a partition away while one of its files is being put.
//
// cancel stops an upload between requests, never during one: a request
// cut off by the client may still complete on the server, and the file
// would appear after the partition's next owner listed the lake, beside
// the files it makes of the same records. A revocation therefore waits for
// the requests under way (each bounded by the rebalance timeout) and stops
// the rest.
type upload struct {
	p      *partition
	f      *openFile
	cancel context.CancelFunc
	err    error
}

// roll finishes f and starts putting it into the lake; the partition's low
// water mark stays at or before f's first offset until the put is done.
func (a *Archiver) roll(p *partition, f *openFile) error {
	delete(p.open, f.name.Date)
	a.openFiles--
	if err := f.finish(); err != nil {
		f.discard()
		p.hole(f.name.First)
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &upload{p: p, f: f, cancel: cancel}
	p.uploads[u] = struct{}{}
	a.uploading++
	a.uploaders.Go(func() {
		u.err = a.put(ctx, f)
		a.uploaded <- u
	})
	a.pauseWhileBehind()
	return nil
}

// put puts the finished file into the lake, retrying a failing store with
// backoff until it takes it or stop ends (the spooled file is kept, so
// nothing is read again from Kafka). stop is looked at between requests
// only (see upload). f is discarded either way.
func (a *Archiver) put(stop context.Context, f *openFile) error {
	defer f.discard()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-stop.Done():
		return fmt.Errorf("put %s: %w", f.name.Key(), stop.Err())
	}
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if stop.Err() != nil {
			return fmt.Errorf("put %s: %w", f.name.Key(), stop.Err())
		}
		// Bounded so a revocation ends within the rebalance timeout (see
		// New); a request cut off here that still lands is the same bytes
		// under the same name, which the next attempt accepts.
		ctx, cancel := context.WithTimeout(context.Background(), a.requestTimeout)
		n, err := f.put(ctx, a.lake)
		cancel()
		if err == nil {
			a.lakeOK.Store(true)
			now := time.Now()
			a.m.rolled(now, n, f.w.Rows())
			a.m.Duplicates.Add(float64(f.dups))
			a.log.Info().Str("file", f.name.Key()).Int64("events", f.w.Rows()).Int64("bytes", n).Int64("duplicates_dropped", f.dups).
				Dur("age", now.Sub(f.opened)).Msg("file written")
			return nil
		}
		a.lakeOK.Store(false)
		if errors.Is(err, lake.ErrDifferentContent) {
			return err
		}
		a.m.PutRetries.Inc()
		a.log.Warn().Str("file", f.name.Key()).Int("attempt", attempt).Str("error", err.Error()).Msg("lake put failed; retrying")
		select {
		case <-stop.Done():
			return fmt.Errorf("put %s: %w", f.name.Key(), stop.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// finished takes a done upload on the poll loop: the partition's low water
// mark moves past the file and is committed. A name that holds other bytes
// stops the archiver: something else writes this lake.
func (a *Archiver) finished(u *upload) error {
	u.cancel()
	delete(u.p.uploads, u)
	a.uploading--
	a.resumeWhenCaughtUp()
	if u.err != nil {
		u.p.hole(u.f.name.First)
		if errors.Is(u.err, lake.ErrDifferentContent) {
			return fmt.Errorf("partition %d: %w", u.p.id, u.err)
		}
		a.m.Abandoned.Inc()
		a.log.Warn().Int32("partition", u.p.id).Str("file", u.f.name.Key()).Str("error", u.err.Error()).
			Msg("file not published; its records will be read again")
		return nil
	}
	if a.parts[u.p.id] == u.p {
		a.commit(u.p)
	}
	return nil
}

// drain takes every upload done so far, without waiting.
func (a *Archiver) drain() error {
	for {
		select {
		case u := <-a.uploaded:
			if err := a.finished(u); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// release rolls every open file of parts and waits, within ctx, for their
// uploads (at revocation and at shutdown), then commits each partition's
// low water mark. An upload not done in time is cancelled: its records are
// read again by the partition's next owner, which names its files the same
// way.
func (a *Archiver) release(ctx context.Context, parts []*partition) error {
	var first error
	for _, p := range parts {
		for _, f := range p.open {
			if f.broken {
				a.drop(p, f)
				p.hole(f.name.First)
				continue
			}
			first = worse(first, a.roll(p, f))
		}
	}
	first = worse(first, a.await(ctx, parts))
	for _, p := range parts {
		a.commit(p)
	}
	return first
}

// await waits until no upload of parts is under way, stopping those left
// when ctx ends: they return once their request under way, if any, is done.
func (a *Archiver) await(ctx context.Context, parts []*partition) error {
	var first error
	for _, p := range parts {
		for len(p.uploads) > 0 {
			select {
			case u := <-a.uploaded:
				first = worse(first, a.finished(u))
			case <-ctx.Done():
				for u := range p.uploads {
					u.cancel()
				}
				first = worse(first, a.finished(<-a.uploaded))
			}
		}
	}
	return first
}

// worse keeps the first error, unless a later one says the lake holds other
// bytes under a name, which stops the archiver.
func worse(first, err error) error {
	if err != nil && (first == nil || errors.Is(err, lake.ErrDifferentContent)) {
		return err
	}
	return first
}

// pauseWhileBehind stops fetching while as many files wait for the lake
// as may be open: a store that is down holds back the consumer, not memory
// or the spool disk.
func (a *Archiver) pauseWhileBehind() {
	if a.paused || a.uploading < a.cfg.Roll.MaxOpenFiles {
		return
	}
	if err := a.c.Pause(a.assignment()); err != nil {
		a.log.Warn().Str("error", err.Error()).Msg("pause")
		return
	}
	a.paused = true
	a.log.Warn().Int("files_waiting", a.uploading).Msg("the lake is behind: fetching paused until it takes the files waiting")
}

func (a *Archiver) resumeWhenCaughtUp() {
	if !a.paused || a.uploading > a.cfg.Roll.MaxOpenFiles/2 {
		return
	}
	if err := a.c.Resume(a.assignment()); err != nil {
		a.log.Warn().Str("error", err.Error()).Msg("resume")
		return
	}
	a.paused = false
	a.log.Info().Msg("the lake caught up: fetching resumed")
}

func (a *Archiver) assignment() []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, 0, len(a.parts))
	for id := range a.parts {
		topic := a.cfg.Topic
		out = append(out, kafka.TopicPartition{Topic: &topic, Partition: id})
	}
	return out
}

// commit commits the partition's low water mark when it moved. A failed
// commit is only logged: the lake's files still say what is archived.
func (a *Archiver) commit(p *partition) {
	w := p.lowWater()
	if w <= p.committed {
		return
	}
	topic := a.cfg.Topic
	if _, err := a.c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: p.id, Offset: kafka.Offset(w)}}); err != nil {
		a.m.CommitErrors.Inc()
		a.log.Warn().Int32("partition", p.id).Int64("offset", w).Str("error", err.Error()).Msg("offset commit failed; the lake's files still mark the position")
		return
	}
	p.committed = w
}

// lostAssignment marks the archiver unready once the group took its
// partitions away (it stalled past the rebalance timeout); the next
// assignment makes it ready again.
func (a *Archiver) lostAssignment() {
	if a.joined.Swap(false) {
		a.m.Lost.Inc()
		a.log.Warn().Msg("assignment lost: the group gave this member's partitions away; their open files will be dropped and read again by the new owner")
	}
}
