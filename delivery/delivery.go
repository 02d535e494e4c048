// Package delivery hands a stream's records to Kafka under one of two
// guarantees, and says when the source transactions they came from may be
// acknowledged:
//
//   - at-least-once: a transaction is delivered once Kafka acknowledged
//     every one of its records. After a crash some are sent again, with the
//     same ce_id.
//   - exactly-once: records go in Kafka transactions, each ending with a
//     progress record saying how far into the stream its records reach. A
//     transaction is delivered once the Kafka transaction holding its last
//     record committed; a restarted stream skips the records the last
//     committed progress covers, so a read_committed consumer sees each once.
//
// The mode is chosen once, by New. Records of a source transaction are
// acknowledged through a checkpoint.Tracker; records of a chunk (a snapshot
// or a backfill) are made durable together with a cursor record. Kafka's
// backpressure (a full local queue) is waited out in one place, keeping the
// source's connection alive through a hook. The Kafka client's types stay
// here and in kafkaclient; source positions are numbers, and delivery knows
// nothing of where they come from.
package delivery

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/userstream/userstream/checkpoint"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/kafkaclient"
)

// ErrRefused marks a record Kafka refused for good (too large, not
// authorized): retrying cannot fix it, an operator must.
var ErrRefused = errors.New("kafka refused a record for good")

// Position names a source transaction: where it commits (its place in
// commit order), its id and its commit time.
type Position struct {
	LSN  uint64
	Xid  uint32
	Time time.Time
}

// Txn is one source transaction's records in flight.
type Txn struct {
	*checkpoint.Txn
	Commit Position
	seq    int  // records of it so far, produced or found in Kafka
	done   bool // its commit was read
}

// Chunk is a snapshot's or a backfill's records in flight, made durable
// together with their cursor.
type Chunk struct {
	outstanding atomic.Int64
}

// Record is one record to produce.
type Record struct {
	Key, Value []byte
	Headers    []envelope.Header
	DeadLetter bool // to the dead-letter topic
}

// Hooks are what delivery needs from the stream it serves; nil ones do
// nothing.
type Hooks struct {
	// KeepAlive keeps the source's connection alive while delivery waits
	// for Kafka (a full queue, a slow commit); its error ends the wait.
	KeepAlive func(ctx context.Context) error
	// Acked counts records of t that Kafka took for good.
	Acked func(t *Txn, events, deadLetters int, at time.Time)
	// Failed counts a failed delivery: a report with an error, or in
	// exactly-once mode an aborted commit.
	Failed func()
	// Reachable says Kafka answered (true) or all brokers are down.
	Reachable func(ok bool)
	// Origin names the source for the progress record (exactly-once).
	Origin func() (systemID string, timeline int32)
}

// Config is a stream's delivery.
type Config struct {
	Mode Mode
	// ProgressKey keys the exactly-once progress records (the slot); empty:
	// none, for a stream that never resumes on them (a backfill).
	ProgressKey []byte
	// TransactionInterval is the longest an exactly-once Kafka transaction
	// stays open while records arrive; TransactionRecords caps its records.
	TransactionInterval time.Duration
	TransactionRecords  int
	// ShutdownTimeout bounds the wait for delivery reports at a clean stop.
	ShutdownTimeout time.Duration
	Log             zerolog.Logger
	Hooks           Hooks
}

// Stream delivers one session's records through one producer. Produce,
// Committed, ProduceChunk, Durable, Tick and Finish belong to one goroutine;
// Serve runs beside it.
type Stream struct {
	cfg      Config
	sink     *kafkaclient.Producer
	tracker  *checkpoint.Tracker
	eo       *exactlyOnce          // nil: at-least-once
	skip     Progress              // exactly-once: what is already in Kafka
	produced atomic.Int64          // records librdkafka accepted
	reported atomic.Int64          // delivery reports served
	fail     atomic.Pointer[error] // the first failed delivery report
}

// New returns the stream's delivery in cfg.Mode through sink, which must be
// transactional exactly when the mode is exactly-once (its configuration
// from Mode.Producer). tracker receives the source transactions' records;
// nil for a stream of chunks only.
func New(cfg Config, sink *kafkaclient.Producer, tracker *checkpoint.Tracker) *Stream {
	s := &Stream{cfg: cfg, sink: sink, tracker: tracker}
	if cfg.Mode == ExactlyOnce {
		s.eo = &exactlyOnce{s: s}
	}
	return s
}

// Start prepares the producer before the first record. In exactly-once mode
// it fences every older producer of the transactional id and returns the
// last committed progress record (nil when none): what the caller trusts of
// it, it hands to Skip.
func (s *Stream) Start(ctx context.Context, properties map[string]string, progressTopic string) (*Progress, error) {
	if s.eo == nil {
		return nil, nil
	}
	return s.eo.start(ctx, properties, progressTopic)
}

// Skip makes Produce skip the records pr says are in Kafka.
func (s *Stream) Skip(pr Progress) { s.skip = pr }

// Produce hands the next record of t to Kafka, unless the progress given
// to Skip says it is there already (skipped is then true), waiting out a
// full queue. The tracker counts it before it is handed over.
func (s *Stream) Produce(ctx context.Context, t *Txn, r Record) (skipped bool, err error) {
	// The record's number counts only once it is handed to Kafka (or found
	// there): a progress record must never count one that a shutdown
	// stopped before Produce took it.
	seq := t.seq + 1
	if s.skip.covers(t.Commit.LSN, seq) {
		t.seq = seq
		return true, nil
	}
	if s.tracker != nil {
		s.tracker.Add(t.Txn, 1)
	}
	if err := s.send(ctx, r, t); err != nil {
		return false, s.refused(ctx, err)
	}
	t.seq = seq
	if s.eo != nil {
		return false, s.eo.produced(ctx, t, r.DeadLetter)
	}
	return false, nil
}

// Committed follows the tracker's commit of t: in exactly-once mode the
// open Kafka transaction commits when due.
func (s *Stream) Committed(ctx context.Context, t *Txn) error {
	if s.eo == nil {
		return nil
	}
	t.done = true
	return s.eo.tick(ctx)
}

// Tick lets a due Kafka transaction commit while no record arrives.
func (s *Stream) Tick(ctx context.Context) error {
	if s.eo == nil {
		return nil
	}
	return s.eo.tick(ctx)
}

// Due is how soon Tick has something to do.
func (s *Stream) Due() time.Duration {
	if s.eo == nil {
		return time.Hour
	}
	return s.eo.due()
}

// ProduceChunk hands a record of chunk c to Kafka, waiting out a full queue.
func (s *Stream) ProduceChunk(ctx context.Context, c *Chunk, r Record) error {
	c.outstanding.Add(1)
	if err := s.send(ctx, r, c); err != nil {
		c.outstanding.Add(-1)
		return s.refused(ctx, err)
	}
	return nil
}

// Durable makes chunk c's records durable together with a cursor record
// (key, cursor) on the progress topic saying they are: at-least-once waits
// for their delivery reports, then produces the cursor; exactly-once adds
// the cursor to the open Kafka transaction and commits it.
func (s *Stream) Durable(ctx context.Context, c *Chunk, key, cursor []byte) error {
	if s.eo != nil {
		return s.eo.durable(ctx, key, cursor)
	}
	for c.outstanding.Load() > 0 {
		// A failed record never counts down: its failure is the answer.
		if err := s.failure(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.keepAlive(ctx); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.send(ctx, Record{Key: key, Value: cursor}, progressRecord{}); err != nil {
		return s.refused(ctx, err)
	}
	return nil
}

// Finish makes what was produced durable at a clean stop: exactly-once
// commits the open Kafka transaction; at-least-once waits, up to the
// shutdown timeout, for the delivery reports (what is still undelivered then
// is not acknowledged, and is read again by the next run).
func (s *Stream) Finish(ctx context.Context) error {
	if s.eo != nil {
		return s.eo.finish(ctx)
	}
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	for s.reported.Load() < s.produced.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if err := s.keepAlive(context.Background()); err != nil {
			break
		}
	}
	return nil
}

// Flush waits until Kafka took every record produced: for a job that must
// not end before everything it sent is durable, and that made its last
// chunk durable first (in exactly-once mode a chunk's records commit only
// with their cursor, in Durable; Flush commits the stream's records). It
// fails when a record failed.
func (s *Stream) Flush(ctx context.Context) error {
	if s.eo != nil {
		return s.eo.finish(ctx)
	}
	for s.reported.Load() < s.produced.Load() {
		if err := s.failure(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return s.failure()
}

// failure is the first failed delivery report, if one came.
func (s *Stream) failure() error {
	if err := s.fail.Load(); err != nil {
		return *err
	}
	return nil
}

// Undelivered is how many records await their delivery report; ok is false
// in exactly-once mode, where records get none.
func (s *Stream) Undelivered() (n int64, ok bool) {
	return s.produced.Load() - s.reported.Load(), s.sink.Reports()
}

// Close aborts an exactly-once stream's open Kafka transaction, whose
// records would otherwise pin every read_committed consumer of the topic
// until it timed out. The caller closes the sink.
func (s *Stream) Close() {
	if s.eo == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.sink.AbortTransaction(ctx) // an error means none was open
}
