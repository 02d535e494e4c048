package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/userstream/userstream/kafkaclient"
)

// exactlyOnce writes records in Kafka transactions. Each Kafka transaction
// ends with a progress record (on a compacted topic, keyed by the slot)
// that says how far into the stream its records reach, to the record inside
// a source transaction. A source transaction is delivered to the tracker
// only once the Kafka transaction holding its last record committed. On
// start, InitTransactions fences every older producer of the transactional
// id (a zombie's commit then fails).
type exactlyOnce struct {
	s       *Stream
	batch   []batched
	records int       // records in the open Kafka transaction
	began   time.Time // when its first record was produced
	last    *Txn      // the transaction of its last record
}

// batched counts one source transaction's records in the open Kafka
// transaction.
type batched struct {
	t          *Txn
	n, letters int
}

func (d *exactlyOnce) start(ctx context.Context, properties map[string]string, progressTopic string) (*Progress, error) {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.s.sink.InitTransactions(ictx); err != nil {
		return nil, err
	}
	var resume *Progress
	if key := d.s.cfg.ProgressKey; key != nil {
		last, err := kafkaclient.LastValue(ictx, properties, progressTopic, key)
		if err != nil {
			return nil, fmt.Errorf("read the last progress of slot %s: %w", key, err)
		}
		if last != nil {
			pr, err := ParseProgress(last)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			resume = &pr
		}
	}
	return resume, d.s.sink.BeginTransaction()
}

// ErrCorrupt marks a progress record that does not parse: an operator must
// look at the progress topic.
var ErrCorrupt = errors.New("unreadable record on the progress topic")

func (d *exactlyOnce) produced(ctx context.Context, t *Txn, deadLetter bool) error {
	if n := len(d.batch); n > 0 && d.batch[n-1].t == t {
		d.batch[n-1].n++
	} else {
		d.batch = append(d.batch, batched{t: t, n: 1})
	}
	if deadLetter {
		d.batch[len(d.batch)-1].letters++
	}
	if d.records == 0 {
		d.began = time.Now()
	}
	d.records++
	d.last = t
	// A large source transaction spans several Kafka transactions, none of
	// them long.
	if d.records >= d.s.cfg.TransactionRecords || time.Since(d.began) >= d.s.cfg.TransactionInterval*4 {
		return d.checkpoint(ctx)
	}
	return nil
}

func (d *exactlyOnce) tick(ctx context.Context) error {
	if d.records > 0 && d.due() <= 0 {
		return d.checkpoint(ctx)
	}
	return nil
}

// due is how long until the open transaction is due for commit; the reader
// wakes up by then even if nothing else arrives.
func (d *exactlyOnce) due() time.Duration {
	if d.records == 0 {
		return time.Hour
	}
	return d.s.cfg.TransactionInterval - time.Since(d.began)
}

func (d *exactlyOnce) durable(ctx context.Context, key, cursor []byte) error {
	if err := d.s.send(ctx, Record{Key: key, Value: cursor}, progressRecord{}); err != nil {
		return d.s.refused(ctx, fmt.Errorf("produce the cursor: %w", err))
	}
	return d.checkpoint(ctx)
}

func (d *exactlyOnce) finish(ctx context.Context) error {
	if d.records == 0 {
		return nil
	}
	return d.checkpoint(ctx)
}

// checkpoint ends the open Kafka transaction with a progress record,
// commits it, hands its records to the tracker as delivered, and opens the
// next.
func (d *exactlyOnce) checkpoint(ctx context.Context) error {
	if d.last != nil && d.s.cfg.ProgressKey != nil {
		if err := d.produceProgress(ctx); err != nil {
			return d.s.refused(ctx, err)
		}
	}
	if err := d.commit(ctx); err != nil {
		return err
	}
	// No per-record reports in this mode: the commit is Kafka's answer.
	d.s.reachable(true)
	now := time.Now()
	for _, b := range d.batch {
		d.s.tracker.Delivered(b.t.Txn, b.n)
		d.s.acked(b.t, b.n-b.letters, b.letters, now)
	}
	d.forget()
	return d.s.sink.BeginTransaction()
}

// produceProgress adds the stream's progress record to the open
// transaction.
func (d *exactlyOnce) produceProgress(ctx context.Context) error {
	var systemID string
	var timeline int32
	if d.s.cfg.Hooks.Origin != nil {
		systemID, timeline = d.s.cfg.Hooks.Origin()
	}
	value, err := json.Marshal(progressOf(string(d.s.cfg.ProgressKey), d.last, systemID, timeline))
	if err != nil {
		return fmt.Errorf("encode progress: %w", err)
	}
	return d.s.send(ctx, Record{Key: d.s.cfg.ProgressKey, Value: value}, progressRecord{})
}

// commit commits the open Kafka transaction, retrying while Kafka is slow
// or unreachable.
func (d *exactlyOnce) commit(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			// Shutting down (or past SHUTDOWN_TIMEOUT) during an outage: the
			// records stay uncommitted and unacknowledged, and are read again
			// from the source by the next run.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = d.s.sink.AbortTransaction(actx)
			cancel()
			// Nothing is open any more: a clean stop has nothing to finish,
			// and the tracker never saw these records delivered.
			d.forget()
			return fmt.Errorf("commit kafka transaction: %w", ctx.Err())
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := d.s.sink.CommitTransaction(cctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case kafkaclient.RequiresAbort(err):
			// Among them, a record Kafka did not take: this mode's delivery
			// error, as there are no reports per record.
			d.s.failed()
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			abortErr := d.s.sink.AbortTransaction(actx)
			cancel()
			// The stream ends; the next one resumes from the last committed
			// progress.
			d.forget()
			return refusedForGood(errors.Join(err, abortErr))
		case !kafkaclient.IsRetriable(err):
			return err // fenced or fatal: a newer producer took over, or the producer is broken
		}
		// A slow or unreachable Kafka: keep the source's connection alive
		// and try again, as the client allows after a timeout.
		if serr := d.s.keepAlive(context.WithoutCancel(ctx)); serr != nil {
			return serr
		}
	}
}

// forget empties the record of the open Kafka transaction: it was
// committed or aborted.
func (d *exactlyOnce) forget() {
	clear(d.batch)
	d.batch, d.records, d.last = d.batch[:0], 0, nil
}
