package streamer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/kafkasink"
)

// The producer's side channel: delivery reports, client errors and
// librdkafka's log lines, served by one goroutine per session.

// deliver turns delivery reports into acknowledgements. A failed delivery
// ends the session: its events are read again from the slot by the next one.
func (p *pipe) deliver(ctx context.Context) error {
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.stop:
			return nil
		case l := <-p.sink.Logs():
			p.s.log.WithLevel(rdkafkaLevel(l.Level)).Str("kafka_client", l.Tag).Msg(redact(l.Message))
		case e := <-p.sink.Events():
			switch e := e.(type) {
			case *kafka.Message:
				p.reported.Add(1)
				if err := e.TopicPartition.Error; err != nil {
					p.s.metrics.DeliveryErrors.Inc()
					if kafkasink.IsPermanent(err) {
						return permanent(fmt.Errorf("kafka refused an event for good: %w", err))
					}
					return fmt.Errorf("delivery failed: %w", err)
				}
				p.s.kafkaOK.Store(true)
				if c, ok := e.Opaque.(*chunk); ok {
					c.outstanding.Add(-1)
					continue
				}
				t, ok := e.Opaque.(*txn)
				if !ok {
					continue // a progress record: committed with its transaction
				}
				tp := e.TopicPartition.Topic
				p.d.delivered(t, tp != nil && *tp == p.s.cfg.Kafka.DeadLetterTopic)
			case kafka.Error:
				if e.IsFatal() {
					return fmt.Errorf("kafka producer failed: %w", e)
				}
				if e.Code() == kafka.ErrAllBrokersDown {
					p.s.kafkaOK.Store(false)
				}
				if time.Since(lastWarn) > 10*time.Second {
					p.s.log.Warn().Str("kafka_error", e.Code().String()).Str("detail", redact(e.Error())).Msg("kafka client error; retrying")
					lastWarn = time.Now()
				}
			}
		}
	}
}

// explain adds what is known of the cause to the error of a failed
// transactional (exactly-once) session. A failed Kafka transaction says that
// a record failed, not which or why: the next session asks for a report per
// record, so a record Kafka refuses for good stops the streamer, naming the
// cause, instead of every session failing the same way.
func (p *pipe) explain(err error) error {
	if err == nil || p.s.cfg.Kafka.TransactionalID == "" || errors.Is(err, ErrPermanent) {
		return err
	}
	if p.sink.Reports() {
		return cmp.Or(p.refusal(2*time.Second), err)
	}
	p.s.diagnose.Store(true)
	return fmt.Errorf("%w (the next session asks Kafka for a delivery report per record, to name any it refuses)", err)
}

// refusal looks through the delivery reports still queued after a failed
// exactly-once session for one that says Kafka refused a record for good,
// and returns that permanent error. The read goroutine can fail first, on
// the transaction such a refusal broke, before deliver reads the report.
func (p *pipe) refusal(wait time.Duration) error {
	deadline := time.After(wait)
	for {
		select {
		case e := <-p.sink.Events():
			if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil && kafkasink.IsPermanent(m.TopicPartition.Error) {
				p.s.metrics.DeliveryErrors.Inc()
				return permanent(fmt.Errorf("kafka refused an event for good: %w", m.TopicPartition.Error))
			}
		case <-p.sink.Logs():
		case <-deadline:
			return nil
		}
	}
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
