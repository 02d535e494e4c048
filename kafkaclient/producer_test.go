package kafkaclient_test

import (
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/kafkaclient"
)

func TestSettingsThatWeakenDeliveryGuaranteesAreRefused(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		ok    bool
	}{
		{"defaults", map[string]string{}, true},
		{"acks=-1 is all", map[string]string{"acks": "-1"}, true},
		{"acks=all spelled loudly", map[string]string{"acks": "ALL"}, true},
		{"acks=1", map[string]string{"acks": "1"}, false},
		{"acks=0", map[string]string{"acks": "0"}, false},
		{"idempotence off", map[string]string{"enable.idempotence": "false"}, false},
		{"SASL settings pass through", map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": "u", "sasl.password": "p"}, true},
		{"typed Go client settings from text", map[string]string{"go.events.channel.size": "1000"}, true},
		{"an unknown setting", map[string]string{"no.such.setting": "x"}, false},
		{"delivery reports turned off", map[string]string{"go.delivery.reports": "false"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]string{"bootstrap.servers": "127.0.0.1:1"}
			for k, v := range tc.props {
				props[k] = v
			}
			s, err := kafkaclient.New(kafkaclient.Config{Topic: "t", Properties: props})
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if s != nil {
				s.Close()
			}
			if err != nil && strings.Contains(err.Error(), "p\"") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

func TestOnlyErrorsRetryingCannotFixArePermanent(t *testing.T) {
	for code, want := range map[kafka.ErrorCode]bool{
		kafka.ErrMsgSizeTooLarge:          true,
		kafka.ErrTopicAuthorizationFailed: true,
		kafka.ErrAllBrokersDown:           false,
		kafka.ErrMsgTimedOut:              false,
		kafka.ErrQueueFull:                false,
		kafka.ErrOutOfOrderSequenceNumber: false,
	} {
		if got := kafkaclient.IsPermanent(kafka.NewError(code, "", false)); got != want {
			t.Errorf("IsPermanent(%s) = %v, want %v", code, got, want)
		}
	}
}
