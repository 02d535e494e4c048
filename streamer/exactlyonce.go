package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/replication"
)

// exactlyOnce writes records in Kafka transactions. Each Kafka transaction
// ends with a progress record (on a compacted topic, keyed by the slot) that
// says how far into the stream its records reach, to the record inside a
// PostgreSQL transaction. A PostgreSQL transaction is acknowledged to the
// slot only once the Kafka transaction holding its last record committed.
// On start, InitTransactions fences every older producer of the slot (a
// zombie's commit then fails), and the last committed progress tells which
// replayed records are already in Kafka: they are skipped, but only once
// this server's history is shown to hold the transaction the progress names
// (history.go).
type exactlyOnce struct {
	p       *pipe
	resume  progress     // the last committed progress; zero when none
	check   historyCheck // whether the stream bore resume out yet
	batch   []batched
	records int       // records in the open Kafka transaction
	began   time.Time // when its first record was produced
	last    *txn      // the transaction of its last record
}

// batched counts one PostgreSQL transaction's records in the open Kafka
// transaction.
type batched struct {
	t          *txn
	n, letters int
}

// progress is the progress record's value. Records counts the records of
// the transaction at CommitLSN that are in Kafka; Complete says all are.
// Xid and CommitTime name that transaction in its server's history, so a
// session skips on the record only where the history is the same one (see
// trusted); SystemID and Timeline say where it was made, for the operator.
type progress struct {
	Slot       string `json:"slot"`
	CommitLSN  string `json:"commit_lsn"`
	Records    int    `json:"records"`
	Complete   bool   `json:"complete"`
	Xid        uint32 `json:"xid,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	SystemID   string `json:"system_id,omitempty"`
	Timeline   int32  `json:"timeline,omitempty"`
	commit     pglogrepl.LSN
}

func parseProgress(b []byte) (progress, error) {
	var pr progress
	if err := json.Unmarshal(b, &pr); err != nil {
		return pr, fmt.Errorf("progress record: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(pr.CommitLSN)
	if err != nil {
		return pr, fmt.Errorf("progress record: commit_lsn %q: %w", pr.CommitLSN, err)
	}
	pr.commit = lsn
	return pr, nil
}

// commitID is the transaction the record names; ok is false for a record
// that names none (an earlier version's, or one made before anything was
// streamed).
func (pr progress) commitID() (replication.CommitID, bool) {
	t, err := time.Parse(time.RFC3339Nano, pr.CommitTime)
	if pr.commit == 0 || pr.Xid == 0 || err != nil {
		return replication.CommitID{}, false
	}
	return replication.CommitID{LSN: pr.commit, Xid: pr.Xid, Time: t}, true
}

// covers says whether the record number seq (from 1) of the transaction
// committed at commit is in Kafka by this progress. Transactions arrive in
// commit order, so every earlier one is.
func (pr progress) covers(commit pglogrepl.LSN, seq int) bool {
	switch {
	case pr.commit == 0 || commit > pr.commit:
		return false
	case commit < pr.commit:
		return true
	}
	return pr.Complete || seq <= pr.Records
}

func (d *exactlyOnce) start(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.p.sink.InitTransactions(ictx); err != nil {
		return err
	}
	cfg := d.p.s.cfg
	last, err := kafkasink.LastValue(ictx, cfg.Kafka.Properties, cfg.Kafka.ProgressTopic, []byte(cfg.Slot))
	if err != nil {
		return fmt.Errorf("read the last progress of slot %s: %w", cfg.Slot, err)
	}
	if last != nil {
		pr, err := parseProgress(last)
		if err != nil {
			return permanent(err)
		}
		d.resume, d.check = d.p.s.trusted(pr, d.p.start, d.p.serverWAL)
		d.p.held.Store(d.check.pending)
	}
	return d.p.sink.BeginTransaction()
}

func (d *exactlyOnce) admit(cur *txn, seq int) (bool, error) {
	if d.check.pending {
		proved, err := d.check.bears(cur)
		if err != nil {
			return false, d.p.s.disproved(d.resume, d.p.start, err)
		}
		if proved {
			d.p.held.Store(false)
			d.p.s.log.Info().Str("commit_lsn", cur.lsn.String()).Msg("exactly-once: the stream holds the last progress record's transaction; acknowledging again")
		}
	}
	return !d.resume.covers(cur.lsn, seq), nil
}

func (d *exactlyOnce) produced(ctx context.Context, cur *txn, deadLetter bool) error {
	if n := len(d.batch); n > 0 && d.batch[n-1].t == cur {
		d.batch[n-1].n++
	} else {
		d.batch = append(d.batch, batched{t: cur, n: 1})
	}
	if deadLetter {
		d.batch[len(d.batch)-1].letters++
	}
	if d.records == 0 {
		d.began = time.Now()
	}
	d.records++
	d.last = cur
	// A large PostgreSQL transaction spans several Kafka transactions, none
	// of them long.
	if d.records >= d.p.s.cfg.TransactionRecords || time.Since(d.began) >= d.p.s.cfg.TransactionInterval*4 {
		return d.checkpoint(ctx)
	}
	return nil
}

// delivered does nothing: a delivered record is not committed until its
// Kafka transaction is.
func (d *exactlyOnce) delivered(*txn, bool) {}

func (d *exactlyOnce) committed(ctx context.Context, cur *txn) error {
	cur.done = true
	return d.idle(ctx)
}

func (d *exactlyOnce) idle(ctx context.Context) error {
	if err := d.check.passed(d.p.reader.ServerWALEnd()); err != nil {
		return d.p.s.disproved(d.resume, d.p.start, err)
	}
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
	return d.p.s.cfg.TransactionInterval - time.Since(d.began)
}

func (d *exactlyOnce) durable(ctx context.Context, _ *chunk, key, cursor []byte) error {
	if err := d.p.sink.ProduceProgress(key, cursor); err != nil {
		return fmt.Errorf("produce the snapshot cursor: %w", err)
	}
	return d.checkpoint(ctx)
}

func (d *exactlyOnce) finish(ctx context.Context, _ *txn) error {
	if d.records == 0 {
		return nil
	}
	return d.checkpoint(ctx)
}

// refused learns what broke the transaction when a record is refused: a
// failed record leaves librdkafka refusing every later one with a state
// error that names nothing.
func (d *exactlyOnce) refused(ctx context.Context, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	cause := d.p.sink.TransactionError(cctx, err)
	if cause != err {
		d.p.s.metrics.DeliveryErrors.Inc()
		// Nothing is open any more.
		d.forget()
	}
	return refusedForGood(cause)
}

// produceProgress adds the stream's progress record to the open transaction.
func (d *exactlyOnce) produceProgress() error {
	slot := d.p.s.cfg.Slot
	value, err := json.Marshal(progress{Slot: slot, CommitLSN: d.last.lsn.String(), Records: d.last.seq, Complete: d.last.done,
		Xid: d.last.xid, CommitTime: d.last.commitTime.UTC().Format(time.RFC3339Nano),
		SystemID: d.p.reader.SystemID(), Timeline: d.p.reader.Timeline()})
	if err != nil {
		return fmt.Errorf("encode progress: %w", err)
	}
	for {
		err := d.p.sink.ProduceProgress([]byte(slot), value)
		if err == nil || !kafkasink.IsQueueFull(err) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// checkpoint ends the open Kafka transaction with a progress record, commits
// it, hands its records to the tracker as delivered, and opens the next.
func (d *exactlyOnce) checkpoint(ctx context.Context) error {
	if d.last != nil {
		if err := d.produceProgress(); err != nil {
			return d.refused(ctx, fmt.Errorf("produce the progress record: %w", err))
		}
	}
	var err error
	for {
		if ctx.Err() != nil {
			// Shutting down (or past SHUTDOWN_TIMEOUT) during an outage: the
			// records stay uncommitted and unacknowledged, and are read again
			// from the slot by the next run.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = d.p.sink.AbortTransaction(actx)
			cancel()
			// Nothing is open any more: a clean stop has nothing to finish,
			// and the tracker never saw these records delivered.
			d.forget()
			return fmt.Errorf("commit kafka transaction: %w", ctx.Err())
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = d.p.sink.CommitTransaction(cctx)
		cancel()
		if err == nil {
			break
		}
		if kafkasink.RequiresAbort(err) {
			// Among them, a record Kafka did not take: this mode's delivery
			// error, as there are no reports per record.
			d.p.s.metrics.DeliveryErrors.Inc()
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			abortErr := d.p.sink.AbortTransaction(actx)
			cancel()
			// The session ends; the next one resumes from the last committed
			// progress.
			return refusedForGood(errors.Join(err, abortErr))
		}
		if !kafkasink.IsRetriable(err) {
			return err // fenced or fatal: a newer producer took over, or the producer is broken
		}
		// A slow or unreachable Kafka: keep PostgreSQL's connection alive and
		// try again, as the client allows after a timeout.
		if serr := d.p.reader.SendStatusIfDue(context.WithoutCancel(ctx)); serr != nil {
			return serr
		}
	}
	// No per-record reports in this mode: the commit is Kafka's answer.
	d.p.s.kafkaOK.Store(true)
	now := time.Now()
	for _, b := range d.batch {
		d.p.tracker.Delivered(b.t.Txn, b.n)
		d.p.s.metrics.observeCommitted(b.t, b.n-b.letters, b.letters, now)
	}
	d.forget()
	return d.p.sink.BeginTransaction()
}

// forget empties the record of the open Kafka transaction: it was committed
// or aborted.
func (d *exactlyOnce) forget() {
	clear(d.batch)
	d.batch, d.records, d.last = d.batch[:0], 0, nil
}
