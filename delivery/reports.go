package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/kafkaclient"
)

// Serve is the producer's side channel, served until ctx ends or stop
// closes: delivery reports become acknowledgements, client errors are
// logged (rate-limited) and librdkafka's log lines reach the log. A failed
// delivery ends it with an error (ErrRefused when retrying cannot help):
// the stream must end too, and its unacknowledged records are read again.
func (s *Stream) Serve(ctx context.Context, stop <-chan struct{}) error {
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case l := <-s.sink.Logs():
			s.cfg.Log.WithLevel(rdkafkaLevel(l.Level)).Str("kafka_client", l.Tag).Msg(redact(l.Message))
		case e := <-s.sink.Events():
			switch e := e.(type) {
			case *kafka.Message:
				if err := s.report(e); err != nil {
					return err
				}
			case kafka.Error:
				if e.IsFatal() {
					return fmt.Errorf("kafka producer failed: %w", e)
				}
				if e.Code() == kafka.ErrAllBrokersDown {
					s.reachable(false)
				}
				if time.Since(lastWarn) > 10*time.Second {
					s.cfg.Log.Warn().Str("kafka_error", e.Code().String()).Str("detail", redact(e.Error())).Msg("kafka client error; retrying")
					lastWarn = time.Now()
				}
			}
		}
	}
}

// report handles one delivery report.
func (s *Stream) report(m *kafka.Message) error {
	if err := m.TopicPartition.Error; err != nil {
		s.failed()
		if kafkaclient.IsPermanent(err) {
			err = fmt.Errorf("%w: %w", ErrRefused, err)
		} else {
			err = fmt.Errorf("delivery failed: %w", err)
		}
		// Recorded before the report counts: whoever waits for the count
		// (Flush, Durable) then finds the failure.
		s.fail.CompareAndSwap(nil, &err)
		s.reported.Add(1)
		return err
	}
	s.reported.Add(1)
	s.reachable(true)
	switch o := m.Opaque.(type) {
	case *Chunk:
		o.outstanding.Add(-1)
	case *Txn:
		// Only at-least-once gets a report per record; exactly-once
		// acknowledges at the commit.
		deadLetter := m.TopicPartition.Topic != nil && *m.TopicPartition.Topic != s.sink.Topic()
		s.tracker.Delivered(o.Txn, 1)
		if deadLetter {
			s.acked(o, 0, 1, time.Now())
		} else {
			s.acked(o, 1, 0, time.Now())
		}
	}
	return nil
}

// rdkafkaLevel maps syslog levels, which librdkafka uses, to zerolog's.
func rdkafkaLevel(l int) zerolog.Level {
	switch {
	case l <= 3:
		return zerolog.ErrorLevel
	case l == 4:
		return zerolog.WarnLevel
	case l <= 6:
		return zerolog.InfoLevel
	}
	return zerolog.DebugLevel
}

// redact keeps librdkafka messages but cuts anything after "password" or
// "sasl" settings, should a client error ever quote one.
func redact(s string) string {
	low := strings.ToLower(s)
	for _, k := range []string{"password", "sasl.", "secret"} {
		if i := strings.Index(low, k); i >= 0 {
			return s[:i] + "[redacted]"
		}
	}
	return s
}
