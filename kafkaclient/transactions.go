package kafkaclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Transactions: in exactly-once mode the sink is a transactional producer.
// Every Kafka transaction carries a batch of records and a progress record
// saying how far into the source they reach, so a reader of the progress
// topic with read_committed knows exactly which records are in Kafka.

// InitTransactions registers the transactional id with its coordinator. It
// fences every older producer with the same id: their commits fail from
// then on. It also aborts whatever transaction such a producer left open.
func (s *Producer) InitTransactions(ctx context.Context) error {
	if err := s.p.InitTransactions(ctx); err != nil {
		return fmt.Errorf("init kafka transactions: %w", err)
	}
	return nil
}

// BeginTransaction opens a Kafka transaction.
func (s *Producer) BeginTransaction() error {
	if err := s.p.BeginTransaction(); err != nil {
		return fmt.Errorf("begin kafka transaction: %w", err)
	}
	return nil
}

// CommitTransaction flushes and commits the open transaction. On a
// retriable error (a timeout) it may be called again.
func (s *Producer) CommitTransaction(ctx context.Context) error {
	if err := s.p.CommitTransaction(ctx); err != nil {
		return fmt.Errorf("commit kafka transaction: %w", err)
	}
	return nil
}

// AbortTransaction aborts the open transaction; its records are never seen
// by read_committed consumers.
func (s *Producer) AbortTransaction(ctx context.Context) error {
	if err := s.p.AbortTransaction(ctx); err != nil {
		return fmt.Errorf("abort kafka transaction: %w", err)
	}
	return nil
}

// ProduceProgress writes a progress record to the compacted progress topic,
// in the open transaction if there is one.
func (s *Producer) ProduceProgress(key, value []byte) error {
	if s.progress == "" {
		return errors.New("no progress topic configured")
	}
	return s.p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &s.progress, Partition: 0},
		Key:            key,
		Value:          value,
	}, nil)
}

// WriteProgress writes a progress record and waits until Kafka acknowledged
// it. For a producer that is not transactional.
func (s *Producer) WriteProgress(ctx context.Context, key, value []byte) error {
	if s.progress == "" {
		return errors.New("no progress topic configured")
	}
	if !s.reports {
		return errors.New("write progress: a transactional producer writes progress in its transaction (ProduceProgress)")
	}
	done := make(chan kafka.Event, 1)
	err := s.p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.progress, Partition: 0}, Key: key, Value: value}, done)
	if err != nil {
		return fmt.Errorf("write progress: %w", err)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("write progress: %w", ctx.Err())
	case e := <-done:
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			return fmt.Errorf("write progress: %w", m.TopicPartition.Error)
		}
	}
	return nil
}

// IsRetriable reports an error after which the same call may be made again.
func IsRetriable(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.IsRetriable()
}

// TransactionError returns what broke the open transaction when err, from
// Produce, is the state error a transactional producer gives once one of its
// records failed: from then on librdkafka refuses every record with a state
// error that names nothing. The transaction's own error, which a commit
// attempt in that state returns at once without committing anything, names
// the broker's refusal (message too large, not authorized, …). The
// transaction is then aborted, as it must be. Any other error comes back as
// it is.
func (s *Producer) TransactionError(ctx context.Context, err error) error {
	var kerr kafka.Error
	if s.reports || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrState {
		return err
	}
	cause := s.p.CommitTransaction(ctx)
	if cause == nil {
		// Not reached: librdkafka gives the state error only in a state
		// where a commit commits nothing (no transaction, failed, fatal).
		return err
	}
	if RequiresAbort(cause) {
		if aerr := s.p.AbortTransaction(ctx); aerr != nil {
			return errors.Join(fmt.Errorf("the transaction failed: %w", cause), fmt.Errorf("abort it: %w", aerr))
		}
	}
	return fmt.Errorf("the transaction failed: %w", cause)
}

// RequiresAbort reports an error after which the transaction must be
// aborted; the producer stays usable.
func RequiresAbort(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.TxnRequiresAbort()
}

// IsFenced reports that a newer producer with the same transactional id took
// over: this one must stop for good.
func IsFenced(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	return kerr.Code() == kafka.ErrFenced || kerr.Code() == kafka.ErrProducerFenced || kerr.Code() == kafka.ErrInvalidProducerEpoch
}

// LastValues reads topic with read_committed and returns the last value
// written under each key: one read for several records of a small,
// compacted topic.
func LastValues(ctx context.Context, properties map[string]string, topic string) (map[string][]byte, error) {
	last := map[string][]byte{}
	err := ReadRecords(ctx, properties, topic, func(k, v []byte) {
		last[string(k)] = append([]byte(nil), v...)
	})
	return last, err
}

// LastValue reads topic with read_committed and returns the last value
// written under key, or nil when there is none. For small, compacted
// topics such as the progress topic.
func LastValue(ctx context.Context, properties map[string]string, topic string, key []byte) ([]byte, error) {
	var last []byte
	err := ReadRecords(ctx, properties, topic, func(k, v []byte) {
		if string(k) == string(key) {
			last = append(last[:0], v...)
		}
	})
	return last, err
}
