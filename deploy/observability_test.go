// Package deploy_test checks the monitoring files in deploy/: the alert rules
// pass promtool's checks and unit tests, and the dashboard and the rules
// query only series the programs really export.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/userstream/userstream/api"
	"github.com/userstream/userstream/archiver"
	"github.com/userstream/userstream/internal/promreg"
	"github.com/userstream/userstream/streamer"
)

// prometheusOwn are series Prometheus makes itself for every scrape target;
// job and instance are the labels it attaches to every scraped series.
var (
	prometheusOwn   = map[string][]string{"up": nil}
	prometheusAdded = []string{"job", "instance"}
)

// exported returns every series name the api and the streamer export, with
// the label names each carries, from the programs' real registries: the
// collectors' descriptions (which include vectors not yet used) and one
// gathering (which gives each family's type, hence _bucket/_sum/_count).
func exported(t *testing.T) map[string][]string {
	t.Helper()
	apiReg := promreg.New()
	srv := api.NewServer(api.Config{}, nil, zerolog.Nop(), apiReg)
	// One request, so the request vectors have a child and show their type.
	srv.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	streamerReg := promreg.New()
	streamer.New(streamer.Config{}, zerolog.Nop(), streamer.NewMetrics(streamerReg))
	archiverReg := promreg.New()
	archiver.NewMetrics(archiverReg).Lag.WithLabelValues("0").Set(0) // a child, so the vector shows its labels

	names := map[string][]string{}
	for name, labels := range prometheusOwn {
		names[name] = labels
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	varLabels := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	for _, reg := range []*prometheus.Registry{apiReg, streamerReg, archiverReg} {
		descs := make(chan *prometheus.Desc, 256)
		go func() { reg.Describe(descs); close(descs) }()
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			var labels []string
			if v := varLabels.FindStringSubmatch(d.String()); v != nil && v[1] != "" {
				labels = strings.Split(v[1], ",")
			}
			names[m[1]] = labels
		}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			base := f.GetName()
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				names[base+"_bucket"] = append(slices.Clone(names[base]), "le")
				names[base+"_sum"], names[base+"_count"] = names[base], names[base]
			case dto.MetricType_SUMMARY:
				names[base] = append(names[base], "quantile")
				names[base+"_sum"], names[base+"_count"] = names[base], names[base]
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d exported series found: the registries were not read", len(names))
	}
	return names
}

// checkQuery parses a PromQL query and reports every series name or label it
// uses that the programs do not export.
func checkQuery(names map[string][]string, query string) []string {
	q := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(query)
	expr, err := parser.ParseExpr(q)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	hasLabel := func(metric, label string) bool {
		return slices.Contains(names[metric], label) || slices.Contains(prometheusAdded, label) || label == model.MetricNameLabel
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			if _, ok := names[n.Name]; !ok {
				problems = append(problems, fmt.Sprintf("series %q is not exported by the api or the streamer", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if !hasLabel(n.Name, m.Name) {
					problems = append(problems, fmt.Sprintf("series %q has no label %q", n.Name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			var inner []string
			parser.Inspect(n.Expr, func(c parser.Node, _ []parser.Node) error {
				if vs, ok := c.(*parser.VectorSelector); ok {
					inner = append(inner, vs.Name)
				}
				return nil
			})
			for _, l := range n.Grouping {
				if !slices.ContainsFunc(inner, func(metric string) bool { return hasLabel(metric, l) }) {
					problems = append(problems, fmt.Sprintf("groups by %q, a label none of %v has", l, inner))
				}
			}
		}
		return nil
	})
	return problems
}

// dashboardQueries returns every panel's queries, by panel title, from the
// dashboard JSON (rows hold their panels when collapsed).
func dashboardQueries(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title     string  `json:"title"`
		Type      string  `json:"type"`
		Collapsed bool    `json:"collapsed"`
		Panels    []panel `json:"panels"`
		Targets   []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dash struct {
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				// A collapsed row carries its panels; an empty one shows nothing.
				if p.Collapsed && len(p.Panels) == 0 {
					t.Errorf("collapsed row %q holds no panel", p.Title)
				}
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out[p.Title] = append(out[p.Title], tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	return out
}

func TestTheDashboardQueriesOnlySeriesTheProgramsExport(t *testing.T) {
	names := exported(t)
	queries := dashboardQueries(t, "grafana/dashboards/userstream.json")
	// The list: events/s, commit→ack latency, slot lag, WAL status,
	// role, API rate, errors and latency.
	for _, want := range []string{"userstream_streamer_events_produced_total", "userstream_streamer_commit_to_ack_seconds_bucket",
		"userstream_streamer_replication_lag_bytes", "userstream_streamer_slot_wal_status", "userstream_streamer_role",
		"userstream_api_requests_total", "userstream_api_request_duration_seconds_bucket"} {
		found := false
		for _, qs := range queries {
			found = found || slices.ContainsFunc(qs, func(q string) bool { return strings.Contains(q, want) })
		}
		if !found {
			t.Errorf("no panel shows %s", want)
		}
	}
	for title, qs := range queries {
		for _, q := range qs {
			for _, p := range checkQuery(names, q) {
				t.Errorf("panel %q: %s\n  query: %s", title, p, q)
			}
		}
	}
}

func TestTheAlertRulesQueryOnlySeriesTheProgramsExport(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	// promtool checks the file's full schema; this reads the expressions.
	var groups struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &groups); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			for _, p := range checkQuery(names, r.Expr) {
				t.Errorf("alert %s: %s\n  expr: %s", r.Alert, p, r.Expr)
			}
		}
	}
	for _, want := range []string{"UserstreamSlotLagHigh", "UserstreamSlotWALAtRisk", "UserstreamInsertsWithoutEvents",
		"UserstreamDeliveryErrors", "UserstreamNoActiveStreamer", "UserstreamAPIErrors"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}

func TestTheCheckerCatchesUnknownSeriesAndLabels(t *testing.T) {
	names := exported(t)
	tests := []struct {
		query string
		bad   bool
	}{
		{`sum(rate(userstream_streamer_events_produced_total[5m]))`, false},
		{`sum(rate(userstream_streamer_events_total[5m]))`, true},
		{`userstream_api_requests_total{route="POST /users",status="201"}`, false},
		{`userstream_api_requests_total{path="/users"}`, true},
		{`sum by (reason) (userstream_api_requests_total)`, true},
		{`histogram_quantile(0.9, sum by (le) (rate(userstream_api_request_duration_seconds_bucket[5m])))`, false},
		{`userstream_streamer_acked_lsn_bucket`, true},
		{`up{job="userstream-api"} == 0`, false},
		{`sum(rate(`, true},
	}
	for _, tc := range tests {
		if got := len(checkQuery(names, tc.query)) > 0; got != tc.bad {
			t.Errorf("checkQuery(%s) found problems = %v, want %v", tc.query, got, tc.bad)
		}
	}
}

// promtool runs the Debian package's promtool (scripts/lib.sh installs it).
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: make test installs it (Debian package prometheus, scripts/lib.sh ensure_test_deps)")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestTheAlertRulesPassPromtoolAndTheirUnitTests(t *testing.T) {
	promtool(t, "check", "rules", "prometheus/alerts.yml")
	promtool(t, "test", "rules", "prometheus/alerts_test.yml")
	promtool(t, "check", "config", "--syntax-only", "prometheus/prometheus.yml")
}
