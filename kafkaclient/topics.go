package kafkaclient

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// EnsureTopic makes sure the topic (and the dead-letter topic, when set)
// exists. It looks them up first and creates only the missing ones, with the
// configured partitions and the broker's default replication factor, so a
// principal with WRITE and DESCRIBE on existing topics needs no CREATE. An
// access the principal lacks is an *AccessError naming the ACL to grant;
// IsPermanent is true for it.
func (s *Producer) EnsureTopic(ctx context.Context) error {
	admin, err := kafka.NewAdminClientFromProducer(s.p)
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer admin.Close()
	parts := map[string]int{s.topic: s.parts}
	if s.dlq != "" {
		parts[s.dlq] = 1
	}
	if s.progress != "" {
		parts[s.progress] = 1
	}
	names := slices.Sorted(maps.Keys(parts))
	// DescribeTopics never auto-creates a topic, unlike a producer's
	// metadata request on a broker with auto.create.topics.enable.
	desc, err := admin.DescribeTopics(ctx, kafka.NewTopicCollectionOfTopicNames(names))
	if err != nil {
		return fmt.Errorf("describe topics %s: %w", strings.Join(names, ", "), err)
	}
	var missing []kafka.TopicSpecification
	for _, d := range desc.TopicDescriptions {
		switch d.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
			spec := kafka.TopicSpecification{Topic: d.Name, NumPartitions: parts[d.Name], ReplicationFactor: -1}
			switch d.Name {
			case s.progress:
				// Only the last progress record per key matters.
				// Compacted often: every session start reads it whole, and
				// it takes a record and a transaction marker per Kafka
				// transaction; compaction keeps a marker whose records are
				// gone for delete.retention.ms (a day by default), here ten
				// minutes.
				spec.Config = map[string]string{"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1",
					"delete.retention.ms": "600000"}
			case s.dlq:
				// A dead letter may be the only copy of its row's event: keep it
				// until someone deals with it.
				spec.Config = map[string]string{"retention.ms": "-1"}
			}
			missing = append(missing, spec)
		case kafka.ErrTopicAuthorizationFailed:
			// Kafka hides whether the topic exists from a principal that
			// may not describe it.
			return &AccessError{Topic: d.Name, Operation: "DESCRIBE", Action: "look up", Hint: "grant WRITE and DESCRIBE on it (WRITE implies DESCRIBE)", Err: d.Error}
		default:
			return fmt.Errorf("describe topic %s: %w", d.Name, d.Error)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	res, err := admin.CreateTopics(ctx, missing)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", missing[0].Topic, err)
	}
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError, kafka.ErrTopicAlreadyExists: // another process won the race
		case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed:
			return &AccessError{Topic: r.Topic, Operation: "CREATE", Action: "create the missing",
				Hint: fmt.Sprintf("create the topic yourself (replication factor 3, min.insync.replicas=2) or grant CREATE on topic %s", r.Topic), Err: r.Error}
		default:
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Error)
		}
	}
	return nil
}

// AccessError is Kafka refusing the streamer's principal an operation on a
// topic: retrying cannot fix it, an operator must grant the ACL or create the
// topic.
type AccessError struct {
	Topic     string
	Operation string // the ACL operation missing: DESCRIBE or CREATE
	Action    string
	Hint      string
	Err       error
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("kafka refused to %s topic %s (%v): the principal needs the %s ACL on it; %s", e.Action, e.Topic, e.Err, e.Operation, e.Hint)
}

func (e *AccessError) Unwrap() error { return e.Err }
