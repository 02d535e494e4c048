// Package kafkaclient is the project's Kafka client, on librdkafka (through
// confluent-kafka-go). It produces under the guarantees the streamer
// promises: an idempotent producer, acks from every in-sync replica, a
// delivery report for every message (or, for a transactional producer, a
// commit that fails when one was not delivered), and bounded queues so a
// slow Kafka slows the reader instead of growing memory. It also makes the
// topics the streamer needs, and reads small topics whole with
// read_committed (the progress topic, the keys a recovery looks for). It
// knows nothing of PostgreSQL.
package kafkaclient

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/envelope"
)

// Config describes the producer.
type Config struct {
	Topic string
	// DeadLetterTopic, when set, receives the changes that cannot become
	// events; EnsureTopic creates it beside Topic.
	DeadLetterTopic string
	// TransactionalID, when set, makes the sink a transactional producer
	// (exactly-once mode), which gets no delivery report per record.
	TransactionalID string
	// ProgressTopic, when set, receives progress records: a compacted topic
	// EnsureTopic creates beside Topic.
	ProgressTopic string
	Partitions    int // for a topic the sink creates; default 6
	// Linger is how long records wait to be sent together (linger.ms),
	// unless the properties set it; 0 is 5 ms. A full batch goes at once, and
	// a transactional producer sends what is queued when it commits.
	Linger time.Duration
	// Properties are librdkafka settings (bootstrap.servers, security.protocol,
	// sasl.*, ssl.*, …); they override the defaults below, except the ones
	// the delivery guarantees rest on.
	Properties map[string]string
	// Sources says where each property was set ("KAFKA_PROPERTY_…", "file
	// line 3"), so an error about a property can name what to fix.
	Sources map[string]string
}

// named is the property as an error shows it: with its source when known.
func (c Config) named(prop string) string {
	if src, ok := c.Sources[prop]; ok {
		return fmt.Sprintf("%q (set by %s)", prop, src)
	}
	return strconv.Quote(prop)
}

// blame names the sources of the properties behind a librdkafka
// configuration error. librdkafka names the property (`No such configuration
// property: "x"`) but not where it came from, and for an alias it names the
// canonical property (linger.ms → "queue.buffering.max.ms"): when no
// property is quoted, each is tried alone to find the one refused.
func (c Config) blame(err error) error {
	var named []string
	for _, k := range slices.Sorted(maps.Keys(c.Properties)) {
		if strings.Contains(err.Error(), strconv.Quote(k)) {
			named = append(named, c.named(k))
		}
	}
	if len(named) == 0 {
		for _, k := range slices.Sorted(maps.Keys(c.Properties)) {
			cm := kafka.ConfigMap(maps.Clone(defaults))
			cm["bootstrap.servers"] = "127.0.0.1:1"
			if cm.SetKey(k, goTyped(k, c.Properties[k])) != nil {
				continue
			}
			p, perr := kafka.NewProducer(&cm)
			if perr != nil {
				named = append(named, c.named(k))
				continue
			}
			p.Close()
		}
	}
	if len(named) == 0 {
		return err
	}
	return fmt.Errorf("kafka property %s: %w", strings.Join(named, ", "), err)
}

// defaults favour safety first, then throughput. murmur2_random is the
// partitioner of the Java client, so keys land where JVM producers put them.
var defaults = map[string]kafka.ConfigValue{
	"enable.idempotence":           "true",
	"acks":                         "all",
	"compression.type":             "lz4",
	"linger.ms":                    "5",
	"socket.nagle.disable":         "true", // several requests in flight: Nagle would hold the next one back
	"partitioner":                  "murmur2_random",
	"message.timeout.ms":           "0",    // never give up on a message: a Kafka outage is waited out
	"reconnect.backoff.max.ms":     "1000", // a broker back from an outage is found within a second
	"queue.buffering.max.messages": "50000",
	"queue.buffering.max.kbytes":   "32768",
	"go.delivery.report.fields":    "none", // reports carry the opaque; key and value are not copied back
	"go.events.channel.size":       50000,
	"go.logs.channel.enable":       true, // librdkafka's log lines reach the streamer's JSON log
	"log_level":                    "4",  // warnings and worse
}

// setByUser reports whether the properties set any of the names (a
// property and its aliases).
func setByUser(props map[string]string, names ...string) bool {
	for _, n := range names {
		if _, ok := props[n]; ok {
			return true
		}
	}
	return false
}

// guarded are settings an operator may not weaken.
var guarded = map[string]string{"enable.idempotence": "true", "acks": "all"}

// Producer is one Kafka producer, with the reads and topic work the
// streamer does beside producing.
type Producer struct {
	p        *kafka.Producer
	topic    string
	dlq      string
	progress string
	parts    int
	reports  bool // a delivery report per record on Events; false for a transactional producer
}

// producerConfig is the librdkafka configuration for cfg: the defaults,
// the operator's properties, and the settings the guarantees rest on.
func producerConfig(cfg Config) (kafka.ConfigMap, error) {
	cm := kafka.ConfigMap(maps.Clone(defaults))
	if setByUser(cfg.Properties, "queue.buffering.max.ms") {
		// linger.ms's alias: two values for one setting, applied in map
		// order, would leave which one wins to chance.
		delete(cm, "linger.ms")
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Properties)) {
		v := cfg.Properties[k]
		if k == "go.delivery.reports" {
			return nil, fmt.Errorf("kafka property %s: the streamer decides it (its acknowledgements rest on the reports); remove it", cfg.named(k))
		}
		if want, ok := guarded[k]; ok && !sameSetting(k, v, want) {
			return nil, fmt.Errorf("kafka property %s=%s would weaken delivery guarantees; the streamer needs %s=%s", cfg.named(k), v, k, want)
		}
		if err := cm.SetKey(k, goTyped(k, v)); err != nil {
			return nil, fmt.Errorf("kafka property %s: %w", cfg.named(k), err)
		}
	}
	// Reports are what the streamer's acknowledgements rest on: not a
	// setting to take from the properties.
	cm["go.delivery.reports"] = cfg.TransactionalID == ""
	if cfg.TransactionalID != "" {
		// A transaction commits only once every record in it was delivered,
		// and fails (abortable) when one was not: a report per record says
		// nothing more, at a cost per record, except which record and why.
		cm["transactional.id"] = cfg.TransactionalID
	}
	if cfg.Linger > 0 && !setByUser(cfg.Properties, "linger.ms", "queue.buffering.max.ms") {
		cm["linger.ms"] = strconv.FormatInt(cfg.Linger.Milliseconds(), 10)
	}
	if bs, _ := cm["bootstrap.servers"].(string); bs == "" {
		return nil, errors.New("kafka: bootstrap.servers is empty (set KAFKA_BOOTSTRAP_SERVERS)")
	}
	return cm, nil
}

// New creates the producer; it connects lazily.
func New(cfg Config) (*Producer, error) {
	cm, err := producerConfig(cfg)
	if err != nil {
		return nil, err
	}
	reports, _ := cm["go.delivery.reports"].(bool)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		// librdkafka names the offending property, never its value.
		return nil, fmt.Errorf("create kafka producer: %w", cfg.blame(err))
	}
	parts := cfg.Partitions
	if parts <= 0 {
		parts = 6
	}
	return &Producer{p: p, topic: cfg.Topic, dlq: cfg.DeadLetterTopic, progress: cfg.ProgressTopic, parts: parts, reports: reports}, nil
}

// Check makes a producer from cfg and closes it at once, before it has
// anything to send: librdkafka validates every property when the producer is
// made, so a program can refuse bad settings at start-up instead of in its
// first session.
func Check(cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	s.Close()
	return nil
}

// goTyped converts the Go client's own go.* settings, which are typed, from
// their text; librdkafka's settings stay text.
func goTyped(k, v string) kafka.ConfigValue {
	if !strings.HasPrefix(k, "go.") {
		return v
	}
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return v
}

func sameSetting(k, v, want string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	if k == "acks" {
		return v == "all" || v == "-1"
	}
	return v == want
}

// Topic is the topic the sink produces to.
func (s *Producer) Topic() string { return s.topic }

// Produce hands a message to librdkafka; its delivery report arrives on
// Events with the opaque, unless the sink is transactional (Reports).
// kafka.ErrQueueFull (as a kafka.Error) is the backpressure signal: wait for
// deliveries and try again.
func (s *Producer) Produce(key, value []byte, headers []envelope.Header, opaque any) error {
	return s.produce(&s.topic, key, value, headers, opaque)
}

// ProduceDeadLetter is Produce to the dead-letter topic.
func (s *Producer) ProduceDeadLetter(key, value []byte, headers []envelope.Header, opaque any) error {
	if s.dlq == "" {
		return errors.New("no dead-letter topic configured")
	}
	return s.produce(&s.dlq, key, value, headers, opaque)
}

func (s *Producer) produce(topic *string, key, value []byte, headers []envelope.Header, opaque any) error {
	if !s.reports {
		// The client keeps an opaque until its report: with none coming, it
		// would keep every one.
		opaque = nil
	}
	return s.p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: topic, Partition: kafka.PartitionAny},
		Key:            key,
		Value:          value,
		Headers:        kafkaHeaders(headers),
		Opaque:         opaque,
	}, nil)
}

// Reports says whether every record gets a delivery report on Events: not
// for a transactional sink, whose CommitTransaction reports for them all.
func (s *Producer) Reports() bool { return s.reports }

// Events carries delivery reports (*kafka.Message) and client errors (kafka.Error).
func (s *Producer) Events() chan kafka.Event { return s.p.Events() }

// Logs carries librdkafka's log lines; the owner must drain it.
func (s *Producer) Logs() chan kafka.LogEvent { return s.p.Logs() }

// Len is the number of messages not yet delivered or failed.
func (s *Producer) Len() int { return s.p.Len() }

// Abandon drops whatever is still queued, then closes: used when a session
// ends in error, since those events will be read again from the slot.
func (s *Producer) Abandon() {
	_ = s.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
	s.p.Close()
}

// Close closes the producer; call it after every delivery was reported.
func (s *Producer) Close() { s.p.Close() }

// InjectFatalError makes librdkafka raise a fatal error, as when a broker
// lost the idempotent producer's state: fault tests use it to prove the
// streamer recovers.
func (s *Producer) InjectFatalError() {
	s.p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by a fault test")
}

// IsQueueFull reports librdkafka's local queue being full.
func IsQueueFull(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull
}

// IsPermanent reports a delivery error that retrying cannot fix and that an
// operator must look at: the message is too large, or access is denied.
func IsPermanent(err error) bool {
	if _, ok := errors.AsType[*AccessError](err); ok {
		return true
	}
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrInvalidMsgSize, kafka.ErrRecordListTooLarge,
		kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed,
		kafka.ErrTransactionalIDAuthorizationFailed, kafka.ErrSaslAuthenticationFailed,
		kafka.ErrTopicException, kafka.ErrInvalidRecord, kafka.ErrPolicyViolation:
		return true
	}
	return false
}

// kafkaHeaders is headers as the client's type, without a copy: the two
// types are the same struct (the conversion below would not compile
// otherwise), and the client copies them into librdkafka's message before
// Produce returns.
func kafkaHeaders(headers []envelope.Header) []kafka.Header {
	if len(headers) == 0 {
		return nil
	}
	return unsafe.Slice((*kafka.Header)(unsafe.Pointer(unsafe.SliceData(headers))), len(headers))
}

var _ = kafka.Header(envelope.Header{}) // the same fields, in the same order
