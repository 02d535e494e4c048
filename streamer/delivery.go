package streamer

import (
	"context"
	"fmt"
	"time"

	"github.com/userstream/userstream/kafkasink"
)

// Delivery is how records reach Kafka and when the PostgreSQL transactions
// they come from may be acknowledged.
type Delivery string

// The delivery modes.
const (
	// AtLeastOnce acknowledges a transaction once Kafka acknowledged each of
	// its records: after a crash some are sent again, with the same ce_id.
	AtLeastOnce Delivery = "at-least-once"
	// ExactlyOnce writes records in Kafka transactions, each with a progress
	// record; a read_committed consumer sees every record once.
	ExactlyOnce Delivery = "exactly-once"
)

// delivery is the seam between the pipeline and a delivery mode. The read
// goroutine calls everything but delivered, which the delivery-report
// goroutine calls.
type delivery interface {
	// start prepares the producer before the first record.
	start(ctx context.Context) error
	// admit says whether record number seq of cur is to be produced: false
	// when it is already in Kafka. An error ends the session before the
	// record is produced.
	admit(cur *txn, seq int) (bool, error)
	// produced follows a record of cur that librdkafka accepted (the
	// tracker counted it before it was handed over).
	produced(ctx context.Context, cur *txn, deadLetter bool) error
	// delivered handles a successful delivery report of a record of t.
	delivered(t *txn, deadLetter bool)
	// committed follows the tracker's commit of cur.
	committed(ctx context.Context, cur *txn) error
	// idle is called when the reader returned without a message.
	idle(ctx context.Context) error
	// due is how soon idle has something to do.
	due() time.Duration
	// durable makes a snapshot chunk's records durable together with a
	// cursor record saying they are: at-least-once waits for their delivery
	// reports, then writes the cursor; exactly-once writes the cursor into
	// the open Kafka transaction and commits it.
	durable(ctx context.Context, c *chunk, key, cursor []byte) error
	// finish makes what was produced durable at a clean stop.
	finish(ctx context.Context, cur *txn) error
	// refused turns a failed Produce into the session's error: permanent
	// when Kafka refused the record for good.
	refused(ctx context.Context, err error) error
}

// atLeastOnce acknowledges by delivery report: the checkpoint tracker moves
// past a transaction once every one of its records was delivered.
type atLeastOnce struct{ p *pipe }

func (d atLeastOnce) start(context.Context) error                { return nil }
func (d atLeastOnce) admit(*txn, int) (bool, error)              { return true, nil }
func (d atLeastOnce) produced(context.Context, *txn, bool) error { return nil }

func (d atLeastOnce) delivered(t *txn, deadLetter bool) {
	d.p.tracker.Delivered(t.Txn, 1)
	d.p.s.metrics.observeDelivered(t, 1, deadLetter)
}

func (d atLeastOnce) committed(context.Context, *txn) error { return nil }
func (d atLeastOnce) idle(context.Context) error            { return nil }
func (d atLeastOnce) due() time.Duration                    { return time.Hour }

// finish waits, bounded, for outstanding delivery reports.
func (d atLeastOnce) finish(context.Context, *txn) error {
	deadline := time.Now().Add(d.p.s.cfg.ShutdownTimeout)
	for d.p.reported.Load() < d.p.produced.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if err := d.p.reader.SendStatusIfDue(context.Background()); err != nil {
			break
		}
	}
	return nil
}

func (d atLeastOnce) refused(_ context.Context, err error) error { return refusedForGood(err) }

// refusedForGood marks an error that retrying cannot fix as permanent.
func refusedForGood(err error) error {
	if kafkasink.IsPermanent(err) {
		return permanent(fmt.Errorf("kafka refused a record for good: %w", err))
	}
	return err
}

func (d atLeastOnce) durable(ctx context.Context, c *chunk, key, cursor []byte) error {
	for c.outstanding.Load() > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A failed delivery ends the session from the report goroutine.
		if err := d.p.reader.SendStatusIfDue(ctx); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return d.p.sink.ProduceProgress(key, cursor)
}

var (
	_ delivery = atLeastOnce{}
	_ delivery = (*exactlyOnce)(nil)
)
