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
	"go.yaml.in/yaml/v3"
)

func TestComposeRunsPrometheusAndGrafanaOnlyUnderTheObservabilityProfile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"}, cli.WithName("userstream"), cli.WithWorkingDirectory("."))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"prometheus", "grafana"} {
		if slices.Contains(plain.ServiceNames(), s) {
			t.Errorf("plain `docker compose up` starts %s: it belongs behind the observability profile", s)
		}
	}

	p := loadCompose(t, ".")
	for _, name := range []string{"prometheus", "grafana"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("no %s service: %v", name, err)
		}
		if !slices.Equal(s.Profiles, []string{"observability"}) {
			t.Errorf("%s profiles %v, want [observability]", name, s.Profiles)
		}
		for _, v := range s.Volumes {
			if v.Type == "bind" {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s, which is not in the repository: %v", name, v.Source, err)
				}
			}
		}
	}

	// Prometheus scrapes the services at the addresses they listen on, and
	// loads the rules where they are mounted.
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	b, err := os.ReadFile("deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	prom, _ := p.GetService("prometheus")
	for _, rf := range cfg.RuleFiles {
		if !slices.ContainsFunc(prom.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == rf }) {
			t.Errorf("rule file %s is not mounted into the prometheus service", rf)
		}
	}
	listens := map[string]string{"userstream-api": "api:" + port(p, "api", "LISTEN_ADDR"), "userstream-streamer": "streamer:" + port(p, "streamer", "METRICS_ADDR"),
		"userstream-archiver": "archiver:" + port(p, "archiver", "METRICS_ADDR")}
	for _, sc := range cfg.ScrapeConfigs {
		want, ok := listens[sc.JobName]
		if !ok {
			t.Errorf("unexpected scrape job %s", sc.JobName)
			continue
		}
		delete(listens, sc.JobName)
		if len(sc.StaticConfigs) != 1 || !slices.Equal(sc.StaticConfigs[0].Targets, []string{want}) {
			t.Errorf("job %s scrapes %+v, want %s", sc.JobName, sc.StaticConfigs, want)
		}
	}
	if len(listens) != 0 {
		t.Errorf("no scrape job for %v", listens)
	}
	ds, err := os.ReadFile(filepath.Join("deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err != nil || !strings.Contains(string(ds), "url: http://prometheus:9090") {
		t.Errorf("Grafana's data source does not point at the prometheus service (%v)", err)
	}
}

// port is the port in a service's listen-address variable (":5000" → "5000").
func port(p *types.Project, service, variable string) string {
	s, err := p.GetService(service)
	if err != nil {
		return ""
	}
	_, after, _ := strings.Cut(env(s, variable), ":")
	return after
}
