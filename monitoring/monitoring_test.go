// Package monitoring_test checks the monitoring files that docker compose
// provisions (monitoring/): the Prometheus alert rules with promtool, and
// that the alerts and the Grafana dashboard ask only for metrics the
// consumers export.
package monitoring_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/custimport/custimport/libs/testenv"
)

const promtoolInstall = "apt-get install prometheus"

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	path := testenv.Tool(t, "promtool", promtoolInstall)
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Dir = "prometheus"
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func TestAlertRulesAreValid(t *testing.T) {
	t.Parallel()
	out := promtool(t, "check", "rules", "alerts.yml")
	require.Contains(t, out, "SUCCESS")
}

// The unit tests in alerts_test.yml: each alert fires when it should and
// stays quiet when it should not.
func TestAlertRulesFireWhenTheyShould(t *testing.T) {
	t.Parallel()
	out := promtool(t, "test", "rules", "alerts_test.yml")
	require.Contains(t, out, "SUCCESS")
}

func TestPrometheusConfigIsValid(t *testing.T) {
	t.Parallel()
	// The compose path of the rules file; check config reads it relative to
	// the config file, so give it a copy where the container sees it.
	cfg, err := os.ReadFile("prometheus/prometheus.yml")
	require.NoError(t, err)
	dir := t.TempDir()
	rules, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o600))
	local := strings.ReplaceAll(string(cfg), "/etc/prometheus/alerts.yml", "alerts.yml")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(local), 0o600))

	path := testenv.Tool(t, "promtool", promtoolInstall)
	cmd := exec.CommandContext(t.Context(), path, "check", "config", "prometheus.yml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check config:\n%s", out)
}

// Every query of the dashboard is valid PromQL: each is checked as a
// recording rule.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range dashboardQueries(t) {
		rules = append(rules, rule{Record: "dashboard_query_" + strconv.Itoa(i), Expr: q})
	}
	doc := map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	require.NoError(t, os.WriteFile(file, b, 0o600))
	path := testenv.Tool(t, "promtool", promtoolInstall)
	out, err := exec.CommandContext(t.Context(), path, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "dashboard queries:\n%s", out)
}

// The alerts and the dashboard name only metrics that the consumer
// registers, so that a renamed metric cannot leave a panel empty or an alert
// silent.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	t.Parallel()
	exported := consumerMetrics(t)
	require.NotEmpty(t, exported)

	used := map[string][]string{}
	metric := regexp.MustCompile(`custimport_consumer_[a-z0-9_]+`)
	collect := func(where, text string) {
		for _, m := range metric.FindAllString(text, -1) {
			used[m] = append(used[m], where)
		}
	}
	rules, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	collect("prometheus/alerts.yml", string(rules))
	for _, q := range dashboardQueries(t) {
		collect("grafana dashboard", q)
	}
	require.NotEmpty(t, used)
	for name, where := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if trimmed, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, trimmed) {
				base = trimmed
			}
		}
		require.Contains(t, exported, base, "%s (in %v) is not a metric the consumer exports", name, where)
	}
}

// dashboardQueries returns the expr of every target of every dashboard.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var queries []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title      string `json:"title"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(b, &d), f)
		require.NotEmpty(t, d.UID, "%s: a fixed uid keeps links stable", f)
		require.NotEmpty(t, d.Panels, f)
		for _, p := range d.Panels {
			require.Equal(t, "prometheus", p.Datasource.UID, "%s: panel %q uses the provisioned data source", f, p.Title)
			require.NotEmpty(t, p.Targets, "%s: panel %q has no query", f, p.Title)
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "%s: panel %q", f, p.Title)
				queries = append(queries, tg.Expr)
			}
		}
	}
	return queries
}

// consumerMetrics reads the names the consumer registers from its source:
// Namespace "custimport_consumer" plus each Name.
func consumerMetrics(t *testing.T) []string {
	t.Helper()
	name := regexp.MustCompile(`Namespace:\s*ns,\s*Name:\s*"([a-z0-9_]+)"`)
	var names []string
	err := filepath.WalkDir("../consumer", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), `"custimport_consumer"`) {
			return nil
		}
		for _, m := range name.FindAllStringSubmatch(string(b), -1) {
			names = append(names, "custimport_consumer_"+m[1])
		}
		return nil
	})
	require.NoError(t, err)
	return names
}
