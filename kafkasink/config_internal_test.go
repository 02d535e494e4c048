package kafkasink

import "testing"

// A transactional producer lingers until its commit, which sends at once:
// one request per partition per transaction. An operator's linger.ms (or its
// alias, then alone) still wins, and a producer with delivery reports keeps
// 5 ms.
func TestATransactionalProducerLingersUntilItsCommitUnlessTheOperatorSaysOtherwise(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		want  string
		alias string // the property holding the operator's value, when set
	}{
		{"at-least-once", Config{}, "5", ""},
		{"transactional", Config{TransactionalID: "userstream-s"}, transactionalLinger, ""},
		{"transactional, linger.ms set", Config{TransactionalID: "userstream-s", Properties: map[string]string{"linger.ms": "2"}}, "2", ""},
		{"transactional, the alias set", Config{TransactionalID: "userstream-s", Properties: map[string]string{"queue.buffering.max.ms": "3"}}, "", "queue.buffering.max.ms"},
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
