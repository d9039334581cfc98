package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
	"github.com/custimport/custimport/migrations"
)

type testBundle struct {
	env   map[string]string
	top   rabbit.Topology
	db    pgstore.Config
	store *pgstore.Store
	crm   *crmmock.Server
	conn  *amqp.Connection
	pub   *rabbit.Publisher
	// logs holds what workers started by startWorker logged.
	logs testenv.Buffer
}

func setup(t *testing.T, crmCfg crmmock.Config) *testBundle {
	t.Helper()
	db := testenv.MigratedPostgres(t)
	top := testenv.Topology(t)
	mock := crmmock.New(crmCfg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(mock)
	t.Cleanup(srv.Close)

	store, err := pgstore.Open(t.Context(), db)
	require.NoError(t, err)
	t.Cleanup(store.Close)
	conn, err := rabbit.Dial(t.Context(), testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	pub, err := rabbit.NewPublisher(conn)
	require.NoError(t, err)
	require.NoError(t, top.Declare(pub.Channel()))

	return &testBundle{
		env: map[string]string{
			"AMQP_URL":               testenv.AMQPURL(t),
			"DATABASE_URL":           testenv.DatabaseURLWithSchema(t, db),
			"CRM_URL":                srv.URL,
			"QUEUE_PREFIX":           top.Prefix,
			"RETRY_DELAYS":           "50ms,200ms",
			"CONSUMER_PREFETCH":      "64",
			"CONSUMER_BATCH_WAIT":    "20ms",
			"CRM_TIMEOUT":            "2s",
			"CONSUMER_LEASE":         "10s",
			"CONSUMER_RECONNECT_MAX": "1s",
			"LOG_LEVEL":              "debug",
			"CONSUMER_HTTP_ADDR":     "127.0.0.1:0", // parallel consumers, one port each
		},
		top: top, db: db, store: store, crm: mock, conn: conn, pub: pub,
	}
}

// start runs a consumer until the test ends (or stop is called).
func (b *testBundle) start(t *testing.T, extra ...string) (func() error, *testenv.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, extra, func(k string) string { return b.env[k] }, &testenv.Buffer{}, logs)
	}()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, logs
}

func (b *testBundle) publish(t *testing.T, bodies ...[]byte) {
	t.Helper()
	msgs := make([]rabbit.Message, len(bodies))
	for i, body := range bodies {
		msgs[i] = rabbit.Message{Exchange: b.top.Exchange(), Key: rabbit.ImportKey, Publishing: amqp.Publishing{
			MessageId: "m" + strconv.Itoa(i), ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body,
		}}
	}
	require.NoError(t, b.pub.PublishAll(t.Context(), msgs))
}

func body(t *testing.T, email string, row int) []byte {
	t.Helper()
	b, err := customer.Customer{Email: email, Name: "N " + email, Row: int64(row)}.Encode()
	require.NoError(t, err)
	return b
}

func (b *testBundle) counts(t *testing.T) map[pgstore.State]int64 {
	t.Helper()
	c, err := b.store.Counts(t.Context())
	require.NoError(t, err)
	return c
}

func (b *testBundle) waitCounts(t *testing.T, want map[pgstore.State]int64) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := b.counts(t)
		for st, n := range want {
			assert.Equal(c, n, got[st], "%s (all: %v)", st, got)
		}
	}, 30*time.Second, 50*time.Millisecond)
}

// deadLetters drains the dead-letter queue.
func (b *testBundle) deadLetters(t *testing.T) []amqp.Delivery {
	t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(b.top.DeadQueue(), true)
		require.NoError(t, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func (b *testBundle) queueDepth(t *testing.T, q string) int {
	t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	require.NoError(t, err)
	return st.Messages
}

func TestConsumerStoresAndCreatesEachCustomerOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	var bodies [][]byte
	for i := range 300 {
		bodies = append(bodies, body(t, fmt.Sprintf("user%d@example.com", i%250), i))
	}
	b.publish(t, bodies...)
	stop, _ := b.start(t)

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 250, pgstore.StatePending: 0})
	require.Eventually(t, func() bool { return b.queueDepth(t, b.top.Queue()) == 0 }, 10*time.Second, 20*time.Millisecond,
		"the duplicates must be acked too")
	require.NoError(t, stop())
	st := b.crm.Stats()
	require.Equal(t, 250, st.Created)
	require.Empty(t, st.Duplicates)
	require.Empty(t, b.deadLetters(t))
}

func TestConsumerRetriesTransientFailuresWithSameKey(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailRate = 0.3
	cfg.FailAfterCreateRate = 0.3
	cfg.Seed = 7
	b := setup(t, cfg)
	var bodies [][]byte
	for i := range 100 {
		bodies = append(bodies, body(t, fmt.Sprintf("user%d@example.com", i), i))
	}
	b.publish(t, bodies...)
	b.env["CONSUMER_MAX_ATTEMPTS"] = "50" // enough that nobody gives up
	b.env["CRM_BATCH_SIZE"] = "1"         // a call per customer: many chances of a lost reply
	stop, _ := b.start(t)

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 100})
	require.NoError(t, stop())
	st := b.crm.Stats()
	require.Equal(t, 100, st.Created)
	require.Empty(t, st.Duplicates, "a customer was created twice")
	require.Positive(t, st.Replays, "failures after creation must have been replayed")
	require.Empty(t, b.deadLetters(t))
}

func TestConsumerDeadLettersWhatCannotSucceed(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.RejectDomains = []string{"rejected.example"}
	b := setup(t, cfg)
	b.publish(t,
		[]byte("not json"),
		[]byte(`{"name":"no email"}`),
		body(t, "ok@example.com", 1),
		body(t, "someone@rejected.example", 2),
	)
	stop, _ := b.start(t)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 1, pgstore.StateRejected: 1})
	require.NoError(t, stop())

	var reasons []string
	require.Eventually(t, func() bool {
		for _, d := range b.deadLetters(t) {
			reasons = append(reasons, fmt.Sprint(d.Headers["x-death-reason"]))
		}
		return len(reasons) >= 3
	}, 10*time.Second, 50*time.Millisecond)
	require.ElementsMatch(t, []string{reasonInvalidMessage, reasonInvalidMessage, reasonCRMRejected}, reasons)
}

func TestConsumerGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailRate = 1
	b := setup(t, cfg)
	b.env["CONSUMER_MAX_ATTEMPTS"] = "3"
	b.publish(t, body(t, "doomed@example.com", 1))
	stop, _ := b.start(t)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateFailed: 1})
	require.NoError(t, stop())
	var dead []amqp.Delivery
	require.Eventually(t, func() bool { dead = append(dead, b.deadLetters(t)...); return len(dead) == 1 }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, reasonCRMExhausted, dead[0].Headers["x-death-reason"])
	require.Equal(t, int64(3), dead[0].Headers["x-attempts"])
	require.Equal(t, 3, b.crm.Stats().Failed)
}

func TestConsumerTwoWorkersCreateOnce(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Latency = 5 * time.Millisecond
	b := setup(t, cfg)
	var bodies [][]byte
	for i := range 400 {
		// Every email twice, far apart, so the two copies land on different workers.
		bodies = append(bodies, body(t, fmt.Sprintf("user%d@example.com", i%200), i))
	}
	b.env["CONSUMER_PREFETCH"] = "16"
	stop1, _ := b.start(t)
	stop2, _ := b.start(t)
	b.publish(t, bodies...)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 200, pgstore.StatePending: 0})
	require.Eventually(t, func() bool { return b.queueDepth(t, b.top.Queue()) == 0 }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, stop1())
	require.NoError(t, stop2())
	st := b.crm.Stats()
	require.Equal(t, 200, st.Created)
	require.Equal(t, 200, st.Requests+st.BatchCustomers, "two copies of one email on two workers send it to the CRM once between them")
	require.Empty(t, st.Duplicates)
	require.Zero(t, st.Conflicts)
}

func TestConsumerOnUnmigratedDatabaseSaysSo(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	env := map[string]string{"DATABASE_URL": testenv.DatabaseURLWithSchema(t, db), "AMQP_URL": testenv.AMQPURL(t)}
	var stderr testenv.Buffer
	err := run(t.Context(), nil, func(k string) string { return env[k] }, &testenv.Buffer{}, &stderr)
	require.ErrorIs(t, err, pgstore.ErrNotMigrated)
	require.ErrorContains(t, err, "consumer migrate")
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	env := map[string]string{"DATABASE_URL": testenv.DatabaseURLWithSchema(t, db)}
	var stdout testenv.Buffer
	require.NoError(t, run(t.Context(), []string{"migrate"}, func(k string) string { return env[k] }, &stdout, &testenv.Buffer{}))
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.Contains(t, stdout.String(), fmt.Sprintf("applied %d migration(s)", len(files)))
	store, err := pgstore.Open(t.Context(), db)
	require.NoError(t, err)
	store.Close()

	var again testenv.Buffer
	require.NoError(t, run(t.Context(), []string{"migrate"}, func(k string) string { return env[k] }, &again, &testenv.Buffer{}))
	require.Contains(t, again.String(), "applied 0 migration(s)", "a second migrate has nothing to do")
}

func TestBadFlagsAreNamed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--prefetch", "0"}, "--prefetch"},
		{[]string{"--lease", "1s", "--crm-timeout", "5s"}, "--lease"},
		{[]string{"--retry-delays", "1s,x"}, "retry-delays"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"migrate", "--db-max-conns", "1"}, "--db-max-conns"},
		{[]string{"replay", "--limit", "-1"}, "--limit"},
		{[]string{"status", "--delivery-limit", "0"}, "--delivery-limit"},
		{[]string{"health", "--http-addr", "off"}, "--http-addr"},
	} {
		err := run(t.Context(), tc.args, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
		require.ErrorContains(t, err, tc.want, tc.args)
	}
}
