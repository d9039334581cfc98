package main

import (
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"

	amqp "github.com/rabbitmq/amqp091-go"
)

// managementURL returns the test broker's management API, or skips: the
// plugin is optional (make infra enables it), and the AMQP fallback is
// tested without it.
func managementURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TEST_RABBITMQ_MANAGEMENT_URL")
	if u == "" {
		u = "http://guest:guest@127.0.0.1:15672"
	}
	if _, err := rabbit.ManagementDepths(t.Context(), http.DefaultClient, u, "/", nil); err != nil {
		t.Skipf("no RabbitMQ management API at %s (rabbitmq-plugins enable rabbitmq_management): %v", rabbit.RedactAll(u), err)
	}
	return u
}

// statusBundle is a broker topology and a schema with known contents:
// 3 messages in the import queue, 1 dead letter, 2 pending customers and
// 1 synced one.
func statusBundle(t *testing.T) *testBundle {
	t.Helper()
	b := setup(t, crmmock.DefaultConfig())
	b.publish(t, body(t, "a@example.com", 1), body(t, "b@example.com", 2), body(t, "c@example.com", 3))
	require.NoError(t, b.pub.PublishAll(t.Context(), []rabbit.Message{{
		Exchange: b.top.DeadExchange(), Key: rabbit.DeadKey,
		Publishing: amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("given up")},
	}}))
	_, err := b.store.InsertNew(t.Context(), []customer.Customer{{Email: "a@example.com"}, {Email: "b@example.com"}, {Email: "c@example.com"}})
	require.NoError(t, err)
	_, err = b.store.Lease(t.Context(), []string{"c@example.com"}, "test", time.Minute)
	require.NoError(t, err)
	require.NoError(t, b.store.Settle(t.Context(), "test", []pgstore.CRMResult{{Email: "c@example.com", State: pgstore.StateSynced}}))
	return b
}

func (b *testBundle) status(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout testenv.Buffer
	err := run(t.Context(), append([]string{"status"}, args...), func(k string) string { return b.env[k] }, &stdout, &testenv.Buffer{})
	return stdout.String(), err
}

func (b *testBundle) statusJSON(t *testing.T) statusReport {
	t.Helper()
	out, err := b.status(t, "--json")
	require.NoError(t, err, out)
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	return rep
}

func depths(rep statusReport) map[string]int64 {
	m := map[string]int64{}
	for _, q := range rep.Queues {
		m[q.Role] = q.Messages
	}
	return m
}

func TestStatusOverAMQPWhenTheManagementAPIIsAway(t *testing.T) {
	t.Parallel()
	b := statusBundle(t)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	b.env["RABBITMQ_MANAGEMENT_URL"] = "http://secretuser:secretpass@" + strings.TrimPrefix(gone.URL, "http://")

	rep := b.statusJSON(t)
	require.Equal(t, sourceAMQP, rep.QueueSource)
	require.Equal(t, map[string]int64{"import": 3, "retry 50ms": 0, "retry 200ms": 0, "dead": 1}, depths(rep))
	require.Equal(t, b.top.Queue(), rep.Queues[0].Name)
	require.Equal(t, b.top.DeadQueue(), rep.Queues[len(rep.Queues)-1].Name)
	require.Equal(t, map[pgstore.State]int64{pgstore.StatePending: 2, pgstore.StateSynced: 1, pgstore.StateRejected: 0, pgstore.StateFailed: 0}, rep.Customers)
	require.Equal(t, int64(3), rep.CustomersTotal)

	out, err := b.status(t)
	require.NoError(t, err)
	for _, want := range []string{"over AMQP", b.top.Queue(), b.top.DeadQueue(), "pending", "synced", "total"} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "secret")
}

func TestStatusFromTheManagementAPI(t *testing.T) {
	t.Parallel()
	mgmt := managementURL(t)
	b := statusBundle(t)
	b.env["RABBITMQ_MANAGEMENT_URL"] = mgmt

	// The management API's figures are refreshed every few seconds.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		rep := b.statusJSON(t)
		assert.Equal(c, sourceManagement, rep.QueueSource)
		assert.Equal(c, map[string]int64{"import": 3, "retry 50ms": 0, "retry 200ms": 0, "dead": 1}, depths(rep))
		if assert.NotNil(c, rep.Queues[0].Ready) {
			assert.Equal(c, int64(3), *rep.Queues[0].Ready)
		}
	}, 30*time.Second, 500*time.Millisecond)

	out, err := b.status(t)
	require.NoError(t, err)
	require.Contains(t, out, "from the management API at http://127.0.0.1:15672")
	require.NotContains(t, out, "guest")
}

func TestStatusOfMissingQueuesAndUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	top := testenv.Topology(t) // not declared
	db := testenv.Postgres(t)  // not migrated
	env := map[string]string{
		"AMQP_URL":                testenv.AMQPURL(t),
		"DATABASE_URL":            testenv.DatabaseURLWithSchema(t, db),
		"QUEUE_PREFIX":            top.Prefix,
		"RETRY_DELAYS":            "50ms,200ms",
		"RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:1",
	}
	var stdout testenv.Buffer
	err := run(t.Context(), []string{"status"}, func(k string) string { return env[k] }, &stdout, &testenv.Buffer{})
	require.ErrorIs(t, err, pgstore.ErrNotMigrated)
	require.ErrorContains(t, err, "status incomplete")
	out := stdout.String()
	require.Contains(t, out, top.Queue())
	require.Contains(t, out, "not declared yet")
	require.Contains(t, out, "consumer migrate")
}

func TestConsumerHelpListsEveryFlagWithEnvAndDefault(t *testing.T) {
	t.Parallel()
	var asked []string
	getenv := func(k string) string { asked = append(asked, k); return "" }
	var stderr testenv.Buffer
	err := run(t.Context(), []string{"--help"}, getenv, &testenv.Buffer{}, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	help := stderr.String()
	require.NotEmpty(t, asked)
	for _, env := range asked {
		require.Contains(t, help, "env "+env+",", "help lacks the variable %s", env)
	}
	flags := 0
	for line := range strings.Lines(help) {
		if strings.HasPrefix(line, "  --") {
			flags++
			require.Contains(t, line, "default ", "flag without a default: %s", line)
		}
	}
	require.GreaterOrEqual(t, flags, len(asked))
	for _, want := range []string{
		"--http-addr address  (env CONSUMER_HTTP_ADDR, default 127.0.0.1:9090)",
		"--batch-size int  (env CONSUMER_BATCH_SIZE, default 256, or --prefetch if smaller)",
		"--log-every duration  (env CONSUMER_LOG_EVERY, default 10s)",
		"--version  (default false)",
		"consumer status [flags]",
	} {
		require.Contains(t, help, want)
	}
	require.NotContains(t, help, "--json", "status's own flags are in status --help")
	require.NotContains(t, help, "default 0)", "a worked-out default is shown as what it is")
	require.NotContains(t, help, `default "")`)
}

// Each subcommand's --help lists its own flags, and only those.
func TestSubcommandHelpListsItsOwnFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmd       string
		want, not []string
	}{
		{"status", []string{"consumer status", "--json", "--management-url URL  (env RABBITMQ_MANAGEMENT_URL, default http://guest:guest@localhost:15672)", "--queue-prefix"}, []string{"--prefetch", "--reason", "--crm-url"}},
		{"replay", []string{"consumer replay", "--reason", "--limit int  (env REPLAY_LIMIT, default all)", "--amqp-url"}, []string{"--prefetch", "--json", "--crm-url"}},
		{"migrate", []string{"consumer migrate", "--database-url"}, []string{"--amqp-url", "--prefetch", "--json"}},
		{"health", []string{"consumer health", "--http-addr", "--timeout"}, []string{"--database-url", "--amqp-url"}},
	} {
		var stderr testenv.Buffer
		err := run(t.Context(), []string{tc.cmd, "--help"}, func(string) string { return "" }, &testenv.Buffer{}, &stderr)
		require.ErrorIs(t, err, flag.ErrHelp, tc.cmd)
		for _, want := range tc.want {
			require.Contains(t, stderr.String(), want, tc.cmd)
		}
		for _, not := range tc.not {
			require.NotContains(t, stderr.String(), not, tc.cmd)
		}
	}
}

// A mistyped flag is one line naming the nearest flag, not the usage text.
func TestMistypedFlagIsOneLineWithTheNearest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--prefetc", "8"}, "unknown flag --prefetc (did you mean --prefetch?)"},
		{[]string{"status", "--jsno"}, "unknown flag --jsno (did you mean --json?)"},
		{[]string{"replay", "--reasn", "x"}, "unknown flag --reasn (did you mean --reason?)"},
		{[]string{"status", "--prefetch", "8"}, "unknown flag --prefetch"},
	} {
		var stderr testenv.Buffer
		err := run(t.Context(), tc.args, func(string) string { return "" }, &testenv.Buffer{}, &stderr)
		require.ErrorContains(t, err, tc.want, tc.args)
		require.NotContains(t, err.Error(), "\n", tc.args)
		require.Empty(t, stderr.String(), "no usage text after a mistyped flag")
	}
}

func TestConsumerVersion(t *testing.T) {
	t.Parallel()
	var stdout testenv.Buffer
	// --version answers even where nothing else is configured.
	require.NoError(t, run(t.Context(), []string{"--version"}, func(string) string { return "" }, &stdout, &testenv.Buffer{}))
	require.Regexp(t, `^consumer \S+ go\S+\n$`, stdout.String())
}
