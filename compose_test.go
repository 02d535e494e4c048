package userstream_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads a compose file the way docker compose does, with every
// profile enabled so that the rules cover services behind a profile too, and
// no host environment, so `${VAR:-default}` takes its default.
func loadCompose(t *testing.T, dir string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")}, cli.WithName("userstream"),
		cli.WithWorkingDirectory(dir), cli.WithProfiles([]string{"*"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s/docker-compose.yml does not load: %v", dir, err)
	}
	return p
}

// Docker cannot run on the development machines, so the compose file is
// checked by loading it the way docker compose does.
func TestComposeFileDescribesTheWholeStack(t *testing.T) {
	p := loadCompose(t, ".")

	const (
		healthy   = types.ServiceConditionHealthy
		completed = types.ServiceConditionCompletedSuccessfully
	)
	tests := []struct {
		service    string
		image      string // prefix; empty when built from the Dockerfile
		published  string // empty for one-shot services
		dependsOn  map[string]string
		commandHas string
		loginAs    string // the role in DATABASE_URL, if any
	}{
		{service: "db", image: "postgres:17", published: "5432", commandHas: "wal_level=logical"},
		{service: "kafka", image: "apache/kafka:4", published: "9092"},
		{service: "migrate", dependsOn: map[string]string{"db": healthy}, commandHas: "api migrate", loginAs: "test"},
		{service: "db-logins", image: "postgres:17", dependsOn: map[string]string{"migrate": completed}, commandHas: "ALTER ROLE userstream_api LOGIN"},
		{service: "api", published: "5000", dependsOn: map[string]string{"migrate": completed, "db-logins": completed}, loginAs: "userstream_api"},
		{service: "streamer", published: "8081", loginAs: "userstream_streamer",
			dependsOn: map[string]string{"migrate": completed, "db-logins": completed, "kafka": healthy, "api": healthy}},
		{service: "archiver", published: "8082", commandHas: "archiver run",
			dependsOn: map[string]string{"kafka": healthy, "streamer": healthy}},
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
			if tc.published != "" {
				if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
					t.Errorf("no health check")
				}
				if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == tc.published }) {
					t.Errorf("ports = %+v, want %s published", s.Ports, tc.published)
				}
			}
			for dep, cond := range tc.dependsOn {
				if d, ok := s.DependsOn[dep]; !ok || d.Condition != cond {
					t.Errorf("depends_on %s = %+v, want condition %s", dep, d, cond)
				}
			}
			if tc.commandHas != "" && !strings.Contains(strings.Join(s.Command, " "), tc.commandHas) {
				t.Errorf("command %q lacks %q", s.Command, tc.commandHas)
			}
			if tc.loginAs != "" {
				logins, _ := serviceLogins(s)
				if !slices.ContainsFunc(logins, func(l login) bool { return l.user == tc.loginAs }) {
					t.Errorf("logs in as %+v, want %s", logins, tc.loginAs)
				}
			}
		})
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

// The password each program logs in with must be the one db-logins sets for
// its role, or the programs cannot log in at all.
func TestComposeGivesEachRoleThePasswordItsProgramUses(t *testing.T) {
	p := loadCompose(t, ".")
	logins, err := p.GetService("db-logins")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ program, role, passwordVar string }{
		{program: "api", role: "userstream_api", passwordVar: "API_PASSWORD"},
		{program: "streamer", role: "userstream_streamer", passwordVar: "STREAMER_PASSWORD"},
	}
	for _, tc := range tests {
		t.Run(tc.program, func(t *testing.T) {
			s, err := p.GetService(tc.program)
			if err != nil {
				t.Fatal(err)
			}
			ls, bad := serviceLogins(s)
			if len(bad) > 0 || len(ls) != 1 {
				t.Fatalf("logins = %+v (%v), want exactly one", ls, bad)
			}
			set := logins.Environment[tc.passwordVar]
			if ls[0].user != tc.role || set == nil || ls[0].password != *set {
				t.Errorf("%s logs in as %s with the password db-logins gives %s (%v)? want yes", tc.program, ls[0].user, tc.role, set)
			}
			if !strings.Contains(strings.Join(logins.Command, " "), "ALTER ROLE "+tc.role+" LOGIN PASSWORD") {
				t.Errorf("db-logins does not give %s a login", tc.role)
			}
		})
	}
}

// The rules of compose_rules_test.go, applied to this repository's compose
// file, to the file as it was before issue 15, which they must catch, and to
// small files with the mistakes a service added later could make.
func TestComposeRules(t *testing.T) {
	tests := []struct {
		name string
		dir  string   // holding docker-compose.yml, or
		yaml string   // its content
		want []string // each a substring of one finding; nil: no findings
	}{
		{name: "the compose file follows every rule", dir: "."},
		{
			name: "the file before issue 15 kept Kafka in the container and ran both programs as the superuser",
			dir:  "testdata/compose-before-issue-15",
			want: []string{
				"kafka: KAFKA_LOG_DIRS is not set",
				"kafka: CLUSTER_ID is not set",
				"api: logs in as the superuser test",
				"streamer: logs in as the superuser test",
			},
		},
		{
			name: "a program that logs in as a role must wait for the migration and not migrate itself",
			yaml: `
services:
  db: {image: "postgres:17", environment: {POSTGRES_USER: owner}, volumes: ["pg:/var/lib/postgresql/data"]}
  migrate: {build: ., command: [api, migrate], environment: {DATABASE_URL: "postgres://owner:pw@db/userstream"}}
  api:
    build: .
    environment: {DATABASE_URL: "postgres://userstream_api:pw@db/userstream", MIGRATE: "false"}
    depends_on: {migrate: {condition: service_completed_successfully}}
  archiver:
    build: .
    environment: {DATABASE_URL: "postgres://archiver:pw@db/userstream"}
    depends_on: {migrate: {condition: service_started}}
  worker: {build: ., environment: {PGUSER: owner}}
volumes: {pg: {}}
`,
			want: []string{
				"archiver: logs in as a role but does not wait for migrate with service_completed_successfully",
				"archiver: logs in as a role but does not set MIGRATE=false",
				"worker: logs in as the superuser owner (PGUSER)",
			},
		},
		{
			name: "a role login with nothing to wait for is caught, as are DSNs whose role cannot be read",
			yaml: `
services:
  db: {image: "postgres:17", volumes: ["pg:/var/lib/postgresql/data"]}
  api: {build: ., environment: {DATABASE_URL: "postgres://userstream_api:pw@db/userstream", MIGRATE: "false"}}
  archiver: {build: ., environment: {ARCHIVE_DSN: "host=db user=postgres", DATABASE_URL: "postgres://db/userstream"}}
  superuser: {build: ., command: [run, "postgresql://postgres@db/x"]}
volumes: {pg: {}}
`,
			want: []string{
				"api: logs in as a role but does not wait for a one-shot migration service (there is none)",
				"archiver: ARCHIVE_DSN is not a postgres:// URL",
				"archiver: DATABASE_URL names no user",
				"superuser: logs in as the superuser postgres (command)",
			},
		},
		{
			name: "data directories off a named volume are caught for every known stateful image",
			yaml: `
services:
  pg18: {image: "postgres:18", volumes: ["pg:/var/lib/postgresql/data"]}
  pg17-parent: {image: "postgres:17.2", volumes: ["pg:/var/lib/postgresql"]}
  pg-latest: {image: postgres, volumes: ["pg:/var/lib/postgresql/data"]}
  pg-tmpfs: {image: "postgres:17", environment: {PGDATA: /data/pg}, volumes: ["pg:/data", {type: tmpfs, target: /data/pg}]}
  pg-bind: {image: "postgres:17", volumes: ["./pgdata:/var/lib/postgresql/data"]}
  kafka-parent: {image: "apache/kafka:4.1.0", environment: {KAFKA_LOG_DIRS: /var/lib/kafka/data, KAFKA_PROCESS_ROLES: broker, CLUSTER_ID: x}, volumes: ["kafka-data:/var/lib/kafka"]}
  kafka-metadata: {image: "apache/kafka:4.1.0", environment: {KAFKA_LOG_DIRS: /var/lib/kafka/data, KAFKA_METADATA_LOG_DIR: /meta}, volumes: ["kafka-data:/var/lib/kafka/data"]}
  prometheus: {image: "prom/prometheus:v3.0.0", command: ["--storage.tsdb.path=/tsdb"], volumes: ["prom-data:/prometheus"]}
  grafana: {image: "grafana/grafana:11.0.0"}
  psql-client: {image: "postgres:17", command: [psql, -c, "select 1"]}
volumes: {pg: {}, kafka-data: {}, prom-data: {}}
`,
			want: []string{
				"pg18: data directory /var/lib/postgresql/18/docker is not on a named volume",
				"pg17-parent: data directory /var/lib/postgresql/data is not on a named volume",
				"pg-latest: set PGDATA or pin the image's major version",
				"pg-tmpfs: data directory /data/pg is not on a named volume",
				"pg-bind: data directory /var/lib/postgresql/data is not on a named volume",
				"kafka-parent: data directory /var/lib/kafka/data is not on a named volume",
				"kafka-metadata: data directory /meta is not on a named volume",
				"prometheus: data directory /tsdb is not on a named volume",
				"grafana: data directory /var/lib/grafana is not on a named volume",
			},
		},
		{
			name: "an archiver's file:// lake off a named volume is caught; an object-store lake needs none",
			yaml: `
services:
  lake-bind: {build: ., environment: {LAKE_URL: "file:///lake"}, volumes: ["./lake:/lake"]}
  lake-none: {build: ., environment: {LAKE_URL: "file:///var/lib/userstream/lake"}}
  lake-relative: {build: ., environment: {LAKE_URL: "file://lake"}, volumes: ["lake:/lake"]}
  lake-named: {build: ., environment: {LAKE_URL: "file:///data/lake"}, volumes: ["lake:/data"]}
  lake-s3: {build: ., environment: {LAKE_URL: "s3://bucket/prefix?region=eu-west-1"}}
volumes: {lake: {}}
`,
			want: []string{
				"lake-bind: data directory /lake is not on a named volume",
				"lake-none: data directory /var/lib/userstream/lake is not on a named volume",
				"lake-relative: LAKE_URL file://lake is relative",
			},
		},
		{
			name: "data directories on named volumes pass, however they are named",
			yaml: `
services:
  pg18: {image: "postgres:18", volumes: ["pg:/var/lib/postgresql"]}
  pg-custom: {image: "postgres:17", environment: {PGDATA: /var/lib/postgresql/data/pgdata}, volumes: ["pg2:/var/lib/postgresql/data"]}
  kafka: {image: "apache/kafka:4.1.0", environment: {KAFKA_LOG_DIRS: "/var/lib/kafka/data,/var/lib/kafka/data/b"}, volumes: ["kafka-data:/var/lib/kafka/data"]}
  prometheus: {image: "prom/prometheus:v3.0.0", volumes: ["prom-data:/prometheus"]}
  grafana: {image: "grafana/grafana-oss:11.0.0", volumes: ["grafana-data:/var/lib/grafana"]}
volumes: {pg: {}, pg2: {}, kafka-data: {}, prom-data: {}, grafana-data: {}}
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if tc.yaml != "" {
				dir = t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(tc.yaml), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p := loadCompose(t, dir)
			got := append(stateFindings(p), loginFindings(p)...)
			for _, w := range tc.want {
				if !slices.ContainsFunc(got, func(f string) bool { return strings.Contains(f, w) }) {
					t.Errorf("no finding %q among %q", w, got)
				}
			}
			// Nothing beyond what is wanted: a rule that fires on a good
			// file is as wrong as one that never fires.
			for _, f := range got {
				if !slices.ContainsFunc(tc.want, func(w string) bool { return strings.Contains(f, w) }) {
					t.Errorf("unexpected finding: %s", f)
				}
			}
		})
	}
}
