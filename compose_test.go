package userstream_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Docker cannot run on the development machines, so the compose file is
// checked by loading it the way docker compose does.
func TestComposeFileDescribesTheWholeStack(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"}, cli.WithName("userstream"), cli.WithWorkingDirectory("."))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}

	tests := []struct {
		service    string
		image      string // prefix; empty when built from the Dockerfile
		published  string
		dependsOn  []string
		commandHas string
	}{
		{service: "db", image: "postgres:17", published: "5432", commandHas: "wal_level=logical"},
		{service: "kafka", image: "apache/kafka:4", published: "9092"},
		{service: "api", published: "5000", dependsOn: []string{"db"}},
		{service: "streamer", published: "8081", dependsOn: []string{"db", "kafka"}},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			s, err := p.GetService(tc.service)
			if err != nil {
				t.Fatal(err)
			}
			if tc.image != "" && !strings.HasPrefix(s.Image, tc.image) {
				t.Errorf("image = %q, want %s*", s.Image, tc.image)
			}
			if tc.image == "" && (s.Build == nil || s.Build.Dockerfile != "Dockerfile") {
				t.Errorf("build = %+v, want the project's Dockerfile", s.Build)
			}
			if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
				t.Errorf("no health check")
			}
			if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == tc.published }) {
				t.Errorf("ports = %+v, want %s published", s.Ports, tc.published)
			}
			for _, dep := range tc.dependsOn {
				d, ok := s.DependsOn[dep]
				if !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s = %+v, want condition service_healthy", dep, d)
				}
			}
			if tc.commandHas != "" && !strings.Contains(strings.Join(s.Command, " "), tc.commandHas) {
				t.Errorf("command %q lacks %q", s.Command, tc.commandHas)
			}
		})
	}

	db, _ := p.GetService("db")
	if user := db.Environment["POSTGRES_USER"]; user == nil || *user != "test" {
		t.Errorf("db POSTGRES_USER = %v, want test", user)
	}
	streamer, _ := p.GetService("streamer")
	if bs := streamer.Environment["KAFKA_BOOTSTRAP_SERVERS"]; bs == nil || !strings.HasPrefix(*bs, "kafka:") {
		t.Errorf("streamer reaches Kafka at %v, want the kafka service by name", bs)
	}
	kafka, _ := p.GetService("kafka")
	if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; adv == nil || !strings.Contains(*adv, "localhost:9092") || !strings.Contains(*adv, "kafka:") {
		t.Errorf("kafka advertises %v, want localhost:9092 for the host and kafka:… for containers", adv)
	}
}
