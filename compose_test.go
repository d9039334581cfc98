package custimport_test

import (
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// loadCompose parses docker-compose.yml the way `docker compose` does
// (interpolation, env_file resolution, profiles, validation), without a
// Docker engine.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."),
		cli.WithName("custimport"),
		cli.WithProfiles(profiles),
		// Only the files in the repo count: a developer's shell environment
		// or a stray .env must not change what this test sees.
		cli.WithEnv(nil),
	)
	require.NoError(t, err)
	project, err := opts.LoadProject(t.Context())
	require.NoError(t, err)
	return project
}

func TestComposeServices(t *testing.T) {
	project := loadCompose(t, "producer")
	for _, name := range []string{"postgres", "rabbitmq", "mockcrm", "migrate", "consumer", "producer"} {
		_, err := project.GetService(name)
		require.NoError(t, err, "service %s", name)
	}

	for _, name := range []string{"postgres", "rabbitmq"} {
		svc, err := project.GetService(name)
		require.NoError(t, err)
		require.NotNil(t, svc.HealthCheck, "%s needs a healthcheck: others wait on service_healthy", name)
		require.NotEmpty(t, svc.HealthCheck.Test, name)
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
		"mockcrm":  types.ServiceConditionStarted,
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
