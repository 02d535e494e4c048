package streamer

import (
	"context"
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
