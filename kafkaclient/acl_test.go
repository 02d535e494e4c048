package kafkaclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/userstream/userstream/internal/devkafka"
	"github.com/userstream/userstream/kafkaclient"
)

// prefixACL allows op on every topic whose name starts with prefix, the way
// platform teams usually grant an application its topics.
func prefixACL(op kmsg.ACLOperation, prefix string) kfake.ACL {
	return kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: prefix, Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Allow: true}
}

// aclBroker is a devkafka with SASL and ACLs: admin may do anything, writer
// may WRITE (and so DESCRIBE) topics named app-*, creator may also CREATE them.
func aclBroker(t *testing.T) *devkafka.Broker {
	t.Helper()
	b, err := devkafka.Start(devkafka.Config{Auth: &devkafka.Auth{
		Admin: devkafka.User{Name: "admin", Password: "admin-pw"},
		Users: []devkafka.User{
			{Name: "writer", Password: "writer-pw", ACLs: []kfake.ACL{prefixACL(kmsg.ACLOperationWrite, "app-")}},
			{Name: "creator", Password: "creator-pw", ACLs: []kfake.ACL{prefixACL(kmsg.ACLOperationWrite, "app-"), prefixACL(kmsg.ACLOperationCreate, "app-")}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func saslProps(b *devkafka.Broker, user, password string) map[string]string {
	return map[string]string{"bootstrap.servers": b.Addr(), "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
		"sasl.username": user, "sasl.password": password}
}

// topicExists asks as admin, which no ACL limits.
func topicExists(t *testing.T, b *devkafka.Broker, topic string) bool {
	t.Helper()
	cm := kafka.ConfigMap{}
	for k, v := range saslProps(b, "admin", "admin-pw") {
		cm[k] = v
	}
	admin, err := kafka.NewAdminClient(&cm)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(nil, true, 10000)
	if err != nil {
		t.Fatal(err)
	}
	_, ok := md.Topics[topic]
	return ok
}

func TestEnsureTopicNeedsNoCreateRightWhenTheTopicExists(t *testing.T) {
	t.Parallel()
	b := aclBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The platform team made the topic, as admin.
	admin, err := kafkaclient.New(kafkaclient.Config{Topic: "app-users", Partitions: 3, Properties: saslProps(b, "admin", "admin-pw")})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.EnsureTopic(ctx); err != nil {
		t.Fatalf("admin creating the topic: %v", err)
	}
	admin.Close()

	tests := []struct {
		name, user, topic string
		ok                bool
		wantInError       []string
		createdAfter      bool
	}{
		{name: "write and describe are enough for an existing topic", user: "writer", topic: "app-users", ok: true, createdAfter: true},
		{name: "a missing topic without CREATE is a permanent error naming the ACL", user: "writer", topic: "app-missing",
			wantInError: []string{"app-missing", "CREATE ACL", "create the topic yourself"}},
		{name: "a topic the principal may not describe is a permanent error naming the ACL", user: "writer", topic: "other-topic",
			wantInError: []string{"other-topic", "DESCRIBE ACL", "grant WRITE and DESCRIBE"}},
		{name: "a principal with CREATE creates the missing topic", user: "creator", topic: "app-created", ok: true, createdAfter: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kafkaclient.New(kafkaclient.Config{Topic: tc.topic, Partitions: 3, Properties: saslProps(b, tc.user, tc.user+"-pw")})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.EnsureTopic(ctx)
			if tc.ok != (err == nil) {
				t.Fatalf("EnsureTopic = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !kafkaclient.IsPermanent(err) {
					t.Errorf("%v is not permanent: the streamer would retry forever", err)
				}
				var ae *kafkaclient.AccessError
				if !errors.As(err, &ae) {
					t.Errorf("%v is not an *AccessError", err)
				}
				t.Log(err)
				for _, w := range tc.wantInError {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			}
			if got := topicExists(t, b, tc.topic); got != tc.createdAfter {
				t.Errorf("topic exists afterwards = %v, want %v (the lookup must not auto-create it)", got, tc.createdAfter)
			}
		})
	}
}
