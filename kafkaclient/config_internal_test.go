package kafkaclient

import (
	"testing"
	"time"
)

// The streamer's linger (an exactly-once producer lingers as long as a
// transaction lasts) applies unless the operator set linger.ms or its alias,
// which then stands alone; without either it is 5 ms.
func TestTheLingerAskedForAppliesUnlessTheOperatorSetsOne(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		want  string
		alias string // the property holding the operator's value, when set
	}{
		{"none asked", Config{}, "5", ""},
		{"10 ms asked", Config{TransactionalID: "userstream-s", Linger: 10 * time.Millisecond}, "10", ""},
		{"10 ms asked, linger.ms set", Config{TransactionalID: "userstream-s", Linger: 10 * time.Millisecond, Properties: map[string]string{"linger.ms": "2"}}, "2", ""},
		{"10 ms asked, the alias set", Config{TransactionalID: "userstream-s", Linger: 10 * time.Millisecond, Properties: map[string]string{"queue.buffering.max.ms": "3"}}, "", "queue.buffering.max.ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Properties = withBootstrap(tc.cfg.Properties)
			cm, err := producerConfig(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, set := cm["linger.ms"]
			if tc.want == "" && set {
				t.Errorf("linger.ms = %v beside the operator's alias: which one librdkafka applies last is chance", got)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("linger.ms = %v, want %s", got, tc.want)
			}
			if tc.alias != "" && cm[tc.alias] != tc.cfg.Properties[tc.alias] {
				t.Errorf("%s = %v, want the operator's %s", tc.alias, cm[tc.alias], tc.cfg.Properties[tc.alias])
			}
		})
	}
}

func withBootstrap(props map[string]string) map[string]string {
	out := map[string]string{"bootstrap.servers": "127.0.0.1:1"}
	for k, v := range props {
		out[k] = v
	}
	return out
}
