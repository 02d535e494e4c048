package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/userstream/userstream/kafkaclient"
)

// progressRecord is the opaque of a record on the progress topic: its
// report acknowledges nothing.
type progressRecord struct{}

// send hands one record to Kafka, waiting out librdkafka's full queue,
// Kafka's backpressure, while keeping the source's connection alive. It
// returns once the record is taken, on another error, or when ctx ends
// (shutting down during an outage: the record is not acknowledged, and a
// source transaction's is read again by the next run).
func (s *Stream) send(ctx context.Context, r Record, opaque any) error {
	for {
		var err error
		switch {
		case opaque == progressRecord{}:
			err = s.sink.ProduceProgress(r.Key, r.Value)
		case r.DeadLetter:
			err = s.sink.ProduceDeadLetter(r.Key, r.Value, r.Headers, opaque)
		default:
			err = s.sink.Produce(r.Key, r.Value, r.Headers, opaque)
		}
		if err == nil {
			s.produced.Add(1)
			return nil
		}
		if !kafkaclient.IsQueueFull(err) {
			return produceError{err}
		}
		if err := s.keepAlive(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (s *Stream) keepAlive(ctx context.Context) error {
	if s.cfg.Hooks.KeepAlive == nil {
		return nil
	}
	return s.cfg.Hooks.KeepAlive(ctx)
}

// produceError is Kafka's client refusing a record; send's other errors
// are the wait's (the context, the keep-alive hook).
type produceError struct{ err error }

func (e produceError) Error() string { return "produce: " + e.err.Error() }
func (e produceError) Unwrap() error { return e.err }

// refused turns a failed send into the stream's error: ErrRefused when
// Kafka refused the record for good. In exactly-once mode it first learns
// what broke the transaction: a failed record leaves librdkafka refusing
// every later one with a state error that names nothing.
func (s *Stream) refused(ctx context.Context, err error) error {
	if _, ok := errors.AsType[produceError](err); !ok {
		return err
	}
	if s.eo != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		cause := s.sink.TransactionError(cctx, err)
		if cause != err {
			s.failed()
			// Nothing is open any more.
			s.eo.forget()
		}
		err = cause
	}
	return refusedForGood(err)
}

// refusedForGood marks an error that retrying cannot fix.
func refusedForGood(err error) error {
	if kafkaclient.IsPermanent(err) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

func (s *Stream) failed() {
	if s.cfg.Hooks.Failed != nil {
		s.cfg.Hooks.Failed()
	}
}

func (s *Stream) reachable(ok bool) {
	if s.cfg.Hooks.Reachable != nil {
		s.cfg.Hooks.Reachable(ok)
	}
}

func (s *Stream) acked(t *Txn, events, letters int, at time.Time) {
	if s.cfg.Hooks.Acked != nil {
		s.cfg.Hooks.Acked(t, events, letters, at)
	}
}
