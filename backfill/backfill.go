package backfill

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/replication"
)

// Range selects the users to backfill by id: after AfterID, up to and
// including UpToID (0: the largest id when the backfill starts).
type Range struct {
	AfterID, UpToID int64
	// Missing limits the backfill to users whose key is not in the topic:
	// the recovery after a lost slot, which cannot miss a row whatever order
	// ids were committed in.
	Missing   bool
	BatchSize int // rows per query; default 1000
}

// Result counts what a backfill did.
type Result struct {
	Produced int // events Kafka acknowledged
	Present  int // users skipped because the topic or the dead-letter topic holds them (Missing)
	Poison   int // rows that make no valid event, sent to the dead-letter topic
}

func (r *Result) add(o Result) {
	r.Produced += o.Produced
	r.Present += o.Present
	r.Poison += o.Poison
}

// Config is where a backfill reads and writes.
type Config struct {
	Source
	Key      string             // the job's record on the progress topic
	Kafka    kafkaclient.Config // the topics it reads and writes
	Producer kafkaclient.Config // its producer, as its delivery mode needs it
	Delivery delivery.Config
	NewSink  func(kafkaclient.Config) (*kafkaclient.Producer, error)
}

// run is one backfill's state.
type run struct {
	cfg     Config
	conn    *pgx.Conn
	w       *writer
	cp      *copier
	present idSet
}

// Run produces an event for every existing row in the range, and waits
// until Kafka acknowledged all of them. It is for rows the slot never saw
// (inserted before it existed, or lost with a slot). Backfilled events carry
// the same ce_id as streamed ones, and the header userstream_backfill=true;
// a user both backfilled and streamed arrives twice under the same key and
// ce_id.
func Run(ctx context.Context, conn *pgx.Conn, cfg Config, rg Range) (Result, error) {
	var res Result
	if rg.BatchSize <= 0 {
		rg.BatchSize = 1000
	}
	// The writer first: in exactly-once mode it fences an interrupted run of
	// any backfill and aborts its open transaction, so the keys read below
	// are everything that run made durable, and reading them does not wait
	// for that transaction to time out.
	w, err := newWriter(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer w.close()
	r := &run{cfg: cfg, conn: conn, w: w}
	j, err := r.startJob(ctx, rg)
	if err != nil {
		return res, err
	}
	if rg.Missing {
		if err := readAccountedFor(ctx, cfg.Kafka, cfg.Log, &r.present); err != nil {
			return res, err
		}
		if err := r.checkSequence(ctx, r.present.largest); err != nil {
			return res, err
		}
	}
	sysid, db, err := replication.Source(ctx, conn)
	if err != nil {
		return res, err
	}
	r.cp = newCopier(cfg.Source, w.d, sysid, db, envelope.Backfill, "backfill")
	err = r.chunks(w.ctx, &j, rg, &res)
	return res, w.err(err)
}

// chunks sends the job's chunks, each made durable together with the
// cursor that says it is in Kafka, so a crashed backfill resumes after its
// last durable chunk; then it records the job complete and waits until
// Kafka has everything.
func (r *run) chunks(ctx context.Context, j *job, rg Range, res *Result) error {
	var skip func(int64) bool
	if rg.Missing {
		skip = r.present.has
	}
	meter := newProgressMeter(r.cfg.Log, "backfill", j.Total, j.Done, true)
	for j.AfterID < j.UpToID {
		c := &delivery.Chunk{}
		n, last, done, err := r.cp.chunk(ctx, r.conn, c, query{after: j.AfterID, upTo: j.UpToID, limit: rg.BatchSize}, skip)
		res.add(done)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		j.AfterID, j.Done = last, j.Done+int64(n)
		if err := r.durable(ctx, c, *j); err != nil {
			return err
		}
		meter.update(j.Done)
	}
	j.State = "complete"
	if err := r.durable(ctx, &delivery.Chunk{}, *j); err != nil {
		return err
	}
	if err := r.w.d.Flush(ctx); err != nil {
		return err
	}
	meter.done(j.Done)
	return nil
}

// durable makes chunk c durable with j as its cursor.
func (r *run) durable(ctx context.Context, c *delivery.Chunk, j job) error {
	cursor, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return r.w.d.Durable(ctx, c, []byte(r.cfg.Key), cursor)
}

// writer is a backfill's producer and its delivery. Its context ends when
// a delivery fails.
type writer struct {
	sink   *kafkaclient.Producer
	d      *delivery.Stream
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	fail   error // what ended Serve
	stop   chan struct{}
	ended  sync.WaitGroup
}

func newWriter(ctx context.Context, cfg Config) (*writer, error) {
	sink, err := cfg.NewSink(cfg.Producer)
	if err != nil {
		return nil, err
	}
	dc := cfg.Delivery
	dc.ProgressKey = nil // a backfill never skips on the stream's progress
	w := &writer{sink: sink, d: delivery.New(dc, sink, nil), stop: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.ended.Add(1)
	go func() {
		defer w.ended.Done()
		if err := w.d.Serve(w.ctx, w.stop); err != nil {
			w.mu.Lock()
			w.fail = err
			w.mu.Unlock()
			w.cancel()
		}
	}()
	if err := sink.EnsureTopic(ctx); err != nil {
		w.close()
		return nil, err
	}
	if _, err := w.d.Start(ctx, cfg.Kafka.Properties, cfg.Kafka.ProgressTopic); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// err is the failed delivery that ended the writer, if one did, in place
// of err (which is then its consequence: a cancelled context).
func (w *writer) err(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && w.fail != nil {
		return w.fail
	}
	return err
}

func (w *writer) close() {
	// A failed chunk's transaction would pin every read_committed consumer
	// of the topic until it timed out.
	w.d.Close()
	close(w.stop)
	w.ended.Wait()
	w.cancel()
	w.mu.Lock()
	failed := w.fail != nil
	w.mu.Unlock()
	if failed {
		// Its records are sent again by the next run.
		w.sink.Abandon()
	} else {
		w.sink.Close()
	}
}
