package custimport_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// loadCompose parses docker-compose.yml the way `docker compose` does
// (interpolation, env_file resolution, profiles, validation), without a
// Docker engine.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	return loadComposeEnv(t, nil, profiles...)
}

// loadComposeEnv is loadCompose with these variables set, as make or a
// user's shell would set them.
func loadComposeEnv(t *testing.T, env []string, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."),
		cli.WithName("custimport"),
		cli.WithProfiles(profiles),
		// Only the files in the repo count: a developer's shell environment
		// or a stray .env must not change what this test sees.
		cli.WithEnv(env),
	)
	require.NoError(t, err)
	project, err := opts.LoadProject(t.Context())
	require.NoError(t, err)
	return project
}

func TestComposeServices(t *testing.T) {
	project := loadCompose(t, "producer")
	for _, name := range []string{"postgres", "rabbitmq", "mockcrm", "migrate", "consumer", "producer", "web"} {
		_, err := project.GetService(name)
		require.NoError(t, err, "service %s", name)
	}

	for _, name := range []string{"postgres", "rabbitmq", "mockcrm", "consumer"} {
		svc, err := project.GetService(name)
		require.NoError(t, err)
		require.NotNil(t, svc.HealthCheck, "%s needs a healthcheck: others wait on service_healthy", name)
		require.NotEmpty(t, svc.HealthCheck.Test, name)
	}
	// The app image has no shell or curl: its services check themselves
	// with their own health subcommand, which reads the same address
	// variable as the server.
	for name, addrVar := range map[string]string{"mockcrm": "MOCKCRM_ADDR", "consumer": "CONSUMER_HTTP_ADDR"} {
		svc, err := project.GetService(name)
		require.NoError(t, err)
		require.Equal(t, types.HealthCheckTest{"CMD", name, "health"}, svc.HealthCheck.Test, name)
		require.NotEmpty(t, derefOr(svc.Environment[addrVar]), "%s: %s set for the server and its health check", name, addrVar)
		require.NotContains(t, svc.Command, "--addr", "%s: the address comes from %s alone", name, addrVar)
		require.NotContains(t, svc.Command, "--http-addr", "%s: the address comes from %s alone", name, addrVar)
	}

	rabbit, err := project.GetService("rabbitmq")
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(rabbit.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == 15672 && p.Published == "15672"
	}), "rabbitmq publishes the management UI on 15672")

	postgres, err := project.GetService("postgres")
	require.NoError(t, err)
	require.Equal(t, "customers", derefOr(postgres.Environment["POSTGRES_DB"]))
	require.NotEmpty(t, derefOr(postgres.Environment["POSTGRES_PASSWORD"]), "env/postgres.env is loaded")
}

func TestComposeConsumerScales(t *testing.T) {
	project := loadCompose(t)
	consumer, err := project.GetService("consumer")
	require.NoError(t, err)

	require.Empty(t, consumer.ContainerName, "a container_name would forbid --scale")
	require.Empty(t, consumer.Ports, "published host ports would collide between replicas")

	want := map[string]string{
		"migrate":  types.ServiceConditionCompletedSuccessfully,
		"postgres": types.ServiceConditionHealthy,
		"rabbitmq": types.ServiceConditionHealthy,
		"mockcrm":  types.ServiceConditionHealthy,
	}
	for dep, condition := range want {
		got, ok := consumer.DependsOn[dep]
		require.True(t, ok, "consumer depends on %s", dep)
		require.Equal(t, condition, got.Condition, "consumer's dependency on %s", dep)
	}

	for _, name := range []string{"AMQP_URL", "DATABASE_URL", "CRM_URL"} {
		require.NotEmpty(t, derefOr(consumer.Environment[name]), "env/consumer.env sets %s", name)
	}

	migrate, err := project.GetService("migrate")
	require.NoError(t, err)
	require.Equal(t, types.ServiceConditionHealthy, migrate.DependsOn["postgres"].Condition)
	require.Equal(t, "no", migrate.Restart)
}

func TestComposeProducerIsOnDemand(t *testing.T) {
	project := loadCompose(t)
	_, err := project.GetService("producer")
	require.Error(t, err, "without its profile the producer does not start with `up`")
	disabled, ok := project.DisabledServices["producer"]
	require.True(t, ok)
	require.Contains(t, disabled.Profiles, "producer")

	project = loadCompose(t, "producer")
	producer, err := project.GetService("producer")
	require.NoError(t, err)
	require.Equal(t, types.ServiceConditionHealthy, producer.DependsOn["rabbitmq"].Condition)
	require.True(t, slices.ContainsFunc(producer.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == "/data" && v.ReadOnly
	}), "producer reads ./data mounted read-only at /data")
}

func derefOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Every host port is a variable whose default is the port a newcomer
// expects, so that a machine already running Postgres or RabbitMQ can move
// ours (make passes the same variables).
func TestComposeHostPortsAreVariables(t *testing.T) {
	ports := []struct {
		service string
		target  uint32
		env     string
		def     string
	}{
		{"postgres", 5432, "POSTGRES_PORT", "5432"},
		{"rabbitmq", 5672, "RABBITMQ_PORT", "5672"},
		{"rabbitmq", 15672, "RABBITMQ_MANAGEMENT_PORT", "15672"},
		{"mockcrm", 8081, "MOCKCRM_PORT", "8081"},
		{"prometheus", 9090, "PROMETHEUS_PORT", "9090"},
		{"grafana", 3000, "GRAFANA_PORT", "3000"},
		{"web", 8080, "WEB_PORT", "8080"},
	}
	published := func(p *types.Project, service string, target uint32) string {
		svc, err := p.GetService(service)
		require.NoError(t, err)
		i := slices.IndexFunc(svc.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == target })
		require.GreaterOrEqual(t, i, 0, "%s publishes %d", service, target)
		return svc.Ports[i].Published
	}
	defaults := loadCompose(t)
	var env []string
	for i, p := range ports {
		require.Equal(t, p.def, published(defaults, p.service, p.target), "%s:%d by default", p.service, p.target)
		env = append(env, fmt.Sprintf("%s=%d", p.env, 40000+i))
	}
	moved := loadComposeEnv(t, env)
	for i, p := range ports {
		require.Equal(t, strconv.Itoa(40000+i), published(moved, p.service, p.target), "%s moves %s:%d", p.env, p.service, p.target)
	}

	// The Makefile declares the same variables with the same defaults.
	makefile, err := os.ReadFile("Makefile")
	require.NoError(t, err)
	for _, p := range ports {
		require.Contains(t, string(makefile), p.env+" ?= "+p.def, "Makefile")
	}
}

// On a clean checkout the producer can write its rejects report and
// checkpoint: the mounted folder exists in the repository (a folder the
// engine creates is root's) and the producer runs as the user make passes.
func TestComposeProducerCanWriteItsState(t *testing.T) {
	project := loadComposeEnv(t, []string{"PRODUCER_UID=1234", "PRODUCER_GID=5678"}, "producer")
	producer, err := project.GetService("producer")
	require.NoError(t, err)
	require.Equal(t, "1234:5678", producer.User)
	require.Equal(t, "/state", derefOr(producer.Environment["PRODUCER_STATE_DIR"]))
	i := slices.IndexFunc(producer.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/state" })
	require.GreaterOrEqual(t, i, 0, "the producer mounts its state folder at /state")
	state := producer.Volumes[i]
	require.Equal(t, types.VolumeTypeBind, state.Type)
	require.False(t, state.ReadOnly)
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(wd, "volumes", "producer"), state.Source)
	_, err = os.Stat(filepath.Join("volumes", "producer", ".gitkeep"))
	require.NoError(t, err, "volumes/producer/.gitkeep keeps the folder in every checkout")

	// Without make, the image's own non-root user.
	project = loadCompose(t, "producer")
	producer, err = project.GetService("producer")
	require.NoError(t, err)
	require.Equal(t, "65532:65532", producer.User)
}

// Prometheus scrapes every consumer replica: by DNS on the service name, at
// the port the consumers listen on under compose; Grafana gets its data
// source and dashboard from monitoring/.
func TestComposeMonitoring(t *testing.T) {
	project := loadCompose(t)
	for _, name := range []string{"prometheus", "grafana", "rabbitmq"} {
		svc, err := project.GetService(name)
		require.NoError(t, err)
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind || !strings.Contains(v.Source, "monitoring") {
				continue
			}
			_, err := os.Stat(v.Source)
			require.NoError(t, err, "%s mounts %s", name, v.Source)
			require.True(t, v.ReadOnly, "%s mounts %s read-only", name, v.Source)
		}
	}

	consumer, err := project.GetService("consumer")
	require.NoError(t, err)
	addr := derefOr(consumer.Environment["CONSUMER_HTTP_ADDR"])
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, "env/consumer.env sets CONSUMER_HTTP_ADDR")

	cfg, err := os.ReadFile("monitoring/prometheus/prometheus.yml")
	require.NoError(t, err)
	type scrapeConfig struct {
		JobName    string `yaml:"job_name"`
		DNSConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	}
	var prom struct {
		RuleFiles     []string       `yaml:"rule_files"`
		ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(cfg, &prom))
	i := slices.IndexFunc(prom.ScrapeConfigs, func(s scrapeConfig) bool { return s.JobName == "consumer" })
	require.GreaterOrEqual(t, i, 0, "a scrape job for the consumers")
	require.Len(t, prom.ScrapeConfigs[i].DNSConfigs, 1)
	dns := prom.ScrapeConfigs[i].DNSConfigs[0]
	require.Equal(t, []string{"consumer"}, dns.Names, "every replica of the consumer service")
	require.Equal(t, "A", dns.Type)
	require.Equal(t, port, strconv.Itoa(dns.Port), "the port of CONSUMER_HTTP_ADDR")

	prometheus, err := project.GetService("prometheus")
	require.NoError(t, err)
	for _, rules := range prom.RuleFiles {
		require.True(t, slices.ContainsFunc(prometheus.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == rules }),
			"prometheus mounts its rule file %s", rules)
	}
}

func TestComposeClusterProfile(t *testing.T) {
	project := loadCompose(t)
	for _, name := range []string{"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"} {
		_, err := project.GetService(name)
		require.Error(t, err, "%s starts only with the cluster profile", name)
	}

	project = loadCompose(t, "cluster")
	cookie := ""
	for i, name := range []string{"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"} {
		node, err := project.GetService(name)
		require.NoError(t, err)
		require.Equal(t, name, node.Hostname, "the node name rabbit@%s is what peer discovery lists", name)
		require.NotNil(t, node.HealthCheck, name)
		c := derefOr(node.Environment["RABBITMQ_ERLANG_COOKIE"])
		require.NotEmpty(t, c, "%s: env/rabbitmq-cluster.env sets the cookie", name)
		if i == 0 {
			cookie = c
		}
		require.Equal(t, cookie, c, "one cookie for the whole cluster")
		require.True(t, slices.ContainsFunc(node.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Target == "/etc/rabbitmq/conf.d/20-cluster.conf" && v.ReadOnly
		}), "%s reads the cluster's peer discovery config", name)
		amqpPort := strconv.Itoa(5681 + i)
		require.True(t, slices.ContainsFunc(node.Ports, func(p types.ServicePortConfig) bool {
			return p.Target == 5672 && p.Published == amqpPort && p.HostIP == "127.0.0.1"
		}), "%s publishes AMQP on 127.0.0.1:%s, as make cluster does", name, amqpPort)
	}
}

// Every folder under ./volumes that a non-root service writes to is in the
// repo: a folder the engine creates for a bind mount belongs to root, so the
// service's first write would fail with "permission denied" on a clean
// checkout. (Images that start as root, Postgres and RabbitMQ, chown their
// own data folders.)
func TestComposeWritableMountsExistInTheRepo(t *testing.T) {
	wd, err := os.Getwd()
	require.NoError(t, err)
	volumes := filepath.Join(wd, "volumes") + string(filepath.Separator)
	project := loadCompose(t, "*")
	checked := 0
	for _, svc := range project.Services {
		if svc.User == "" || svc.User == "root" || strings.HasPrefix(svc.User, "0:") {
			continue
		}
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind || v.ReadOnly || !strings.HasPrefix(v.Source, volumes) {
				continue
			}
			checked++
			rel, err := filepath.Rel(wd, v.Source)
			require.NoError(t, err)
			_, err = os.Stat(filepath.Join(v.Source, ".gitkeep"))
			require.NoError(t, err, "service %s writes to %s: keep the folder in the repo with a .gitkeep (and a .gitignore exception)", svc.Name, rel)
		}
	}
	require.NotZero(t, checked, "no service writes under ./volumes: the test looks at nothing")
}
