package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/tcpproxy"
	"github.com/custimport/custimport/libs/testenv"
)

var errCrash = errors.New("simulated crash")

func (b *testBundle) publishN(t *testing.T, n int) {
	t.Helper()
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = body(t, fmt.Sprintf("user%d@example.com", i), i+1)
	}
	b.publish(t, bodies...)
}

// startWorker runs a worker built from the bundle's environment, with a
// crash hook, until the returned stop is called. Its logs go to b.logs.
func (b *testBundle) startWorker(t *testing.T, name string, crashAt func(ctx context.CancelFunc, point string) error) (stop func()) {
	t.Helper()
	env := map[string]string{"CONSUMER_NAME": name}
	for k, v := range b.env {
		env[k] = v
	}
	cfg, _, err := parseWorker(nil, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	store, err := pgstore.Open(t.Context(), cfg.store())
	require.NoError(t, err)
	client, err := openCRM(t.Context(), cfg, store)
	require.NoError(t, err)
	w := newWorker(cfg, slog.New(slog.NewTextHandler(&b.logs, nil)), store, client)
	ctx, cancel := context.WithCancel(t.Context())
	if crashAt != nil {
		w.crashAt = func(point string) error { return crashAt(cancel, point) }
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			store.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func (b *testBundle) maxAttempts(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.store.Pool().QueryRow(t.Context(), `SELECT coalesce(max(crm_attempts), 0) FROM customers`).Scan(&n))
	return n
}

// A consumer killed at any point of a batch, and replaced by another, still
// leaves every customer synced and created once: the lease of the dead one
// expires, the stable Idempotency-Key makes a repeated call a replay.
func TestConsumerKilledAtEachPointCreatesOnce(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"after-insert", "after-crm", "after-settle"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			b := setup(t, crmmock.DefaultConfig())
			b.env["CONSUMER_LEASE"] = "1s"
			b.env["CRM_TIMEOUT"] = "500ms"
			b.publishN(t, 200)

			var crashed atomic.Bool
			b.startWorker(t, "doomed", func(die context.CancelFunc, p string) error {
				if p == point && crashed.CompareAndSwap(false, true) {
					die() // the process is gone: no release, no ack
					return errCrash
				}
				return nil
			})
			// A bound on a wait, not on speed: a busy machine may take long
			// to bring the doomed worker to its point.
			require.Eventually(t, crashed.Load, 2*time.Minute, 5*time.Millisecond)
			b.startWorker(t, "replacement", nil)

			b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 200, pgstore.StatePending: 0})
			st := b.crm.Stats()
			require.Equal(t, 200, st.Created)
			require.Empty(t, st.Duplicates)
			require.Zero(t, st.Conflicts)
			require.Empty(t, b.deadLetters(t))
		})
	}
}

// dbURLVia returns the bundle's database URL with its host replaced.
func dbURLVia(t *testing.T, raw, hostport string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	u.Host = hostport
	return u.String()
}

func TestPostgresLostMidRunBurnsNoAttempt(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Latency = 2 * time.Millisecond
	b := setup(t, cfg)
	proxy, err := tcpproxy.Start(t.Context(), "127.0.0.1:5432")
	require.NoError(t, err)
	defer proxy.Close()
	b.env["DATABASE_URL"] = dbURLVia(t, b.env["DATABASE_URL"], proxy.Addr())
	b.env["CONSUMER_PREFETCH"] = "16"
	b.publishN(t, 400)
	b.startWorker(t, "w1", nil)

	require.Eventually(t, func() bool { return b.counts(t)[pgstore.StateSynced] > 50 }, 10*time.Second, 5*time.Millisecond)
	proxy.Down()
	// Up again once the worker has met the outage and holds its batch.
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "PostgreSQL unavailable") }, 10*time.Second, 5*time.Millisecond)
	proxy.Up()

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 400, pgstore.StatePending: 0})
	require.Equal(t, 400, b.crm.Stats().Created)
	require.Empty(t, b.crm.Stats().Duplicates)
	require.Empty(t, b.deadLetters(t), "a database outage dead-letters nothing")
	require.Equal(t, 1, b.maxAttempts(t), "a database outage burns no attempt")
}

func TestRabbitMQConnectionCutMidRun(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Latency = 2 * time.Millisecond
	b := setup(t, cfg)
	proxy, err := tcpproxy.Start(t.Context(), "127.0.0.1:5672")
	require.NoError(t, err)
	defer proxy.Close()
	b.env["AMQP_URL"] = "amqp://guest:guest@" + proxy.Addr() + "/"
	b.env["CONSUMER_PREFETCH"] = "16"
	b.publishN(t, 400)
	b.startWorker(t, "w1", nil)

	for range 3 {
		synced := b.counts(t)[pgstore.StateSynced]
		require.Eventually(t, func() bool { return b.counts(t)[pgstore.StateSynced] > synced+30 }, 10*time.Second, 5*time.Millisecond)
		proxy.Cut()
	}
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 400, pgstore.StatePending: 0})
	require.Equal(t, 400, b.crm.Stats().Created)
	require.Empty(t, b.crm.Stats().Duplicates)
	require.Empty(t, b.deadLetters(t))
}

func TestCRMOutageOpensCircuitInsteadOfBurningAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	b.env["CONSUMER_CIRCUIT_FAILURES"] = "3"
	b.env["CONSUMER_CIRCUIT_OPEN"] = "200ms"
	b.env["CONSUMER_MAX_ATTEMPTS"] = "4"
	b.env["CONSUMER_CRM_CONCURRENCY"] = "4"
	b.crm.Outage(1500 * time.Millisecond)
	b.publishN(t, 100)
	b.startWorker(t, "w1", nil)

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 100, pgstore.StatePending: 0})
	st := b.crm.Stats()
	require.Equal(t, 100, st.Created)
	require.Empty(t, b.deadLetters(t), "no customer exhausted its attempts during the outage")
	// Without the circuit every customer would have failed about once per
	// retry step during the outage (hundreds of calls); with it, only the
	// calls in flight when it opened (4) and the probes fail.
	require.Less(t, st.Failed, 25, "calls made against a CRM that is down")
}

// The CRM answers 429 to every 100th request, a count and not a rate, so
// that the 429s come whatever the machine's speed.
func TestRateLimitSlowsWithoutBurningAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		batch string
		every int64
	}{
		{batch: "1", every: 100},
		{batch: "10", every: 5},
	} {
		t.Run("batches of "+tc.batch, func(t *testing.T) {
			t.Parallel()
			b := setup(t, crmmock.DefaultConfig())
			var requests, limited atomic.Int64
			limiter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1)%tc.every == 0 {
					limited.Add(1)
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				b.crm.ServeHTTP(w, r)
			}))
			t.Cleanup(limiter.Close)
			b.env["CRM_URL"] = limiter.URL
			b.env["CRM_BATCH_SIZE"] = tc.batch
			b.publishN(t, 300)
			b.startWorker(t, "w1", nil)

			b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 300, pgstore.StatePending: 0})
			require.Equal(t, 300, b.crm.Stats().Created)
			require.Positive(t, limited.Load(), "every %dth request was answered 429", tc.every)
			require.Equal(t, 1, b.maxAttempts(t), "a 429 burns no attempt")
			require.Empty(t, b.deadLetters(t))
		})
	}
}

func TestReplayBringsDeadLettersBackAfterAFix(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailRate = 1
	b := setup(t, cfg)
	b.env["CONSUMER_MAX_ATTEMPTS"] = "2"
	b.env["CONSUMER_CIRCUIT_FAILURES"] = "1000"
	b.publishN(t, 20)
	b.publish(t, []byte("garbage"))
	b.startWorker(t, "w1", nil)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateFailed: 20})
	require.Eventually(t, func() bool { return b.queueDepth(t, b.top.DeadQueue()) == 21 }, 10*time.Second, 10*time.Millisecond)

	cfg.FailRate = 0 // the CRM is fixed
	b.crm.SetConfig(cfg)
	var stdout testenv.Buffer
	err := run(t.Context(), []string{"replay", "--reason", reasonCRMExhausted}, func(k string) string { return b.env[k] }, &stdout, &testenv.Buffer{})
	require.NoError(t, err)
	require.Contains(t, stdout.String(), "replayed 20 dead letters with reason crm_attempts_exhausted")

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 20, pgstore.StateFailed: 0})
	require.Equal(t, 20, b.crm.Stats().Created)
	dead := b.deadLetters(t)
	require.Len(t, dead, 1, "the invalid message was not replayed")
	require.Equal(t, reasonInvalidMessage, dead[0].Headers["x-death-reason"])
}

func TestPoisonMessagesAreDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	huge := `{"email":"huge@example.com","name":"` + strings.Repeat("x", 200<<10) + `"}`
	b.publish(t, []byte(huge), []byte{0xff, 0xfe, 0x00}, []byte(`{"email":["a@b.com"]}`), body(t, "fine@example.com", 1))
	b.startWorker(t, "w1", nil)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 1})
	var dead int
	require.Eventually(t, func() bool { dead += len(b.deadLetters(t)); return dead == 3 }, 10*time.Second, 10*time.Millisecond)
}

// The consuming channel alone closing (here: the queue deleted under a
// running consumer; in production also the broker's consumer timeout) ends
// the session, and the consumer comes back, declares again and goes on.
func TestQueueDeletedUnderConsumerRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	b.startWorker(t, "w1", nil)
	b.publishN(t, 10)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 10})

	ch, err := b.conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(b.top.Queue(), false, false, false)
	require.NoError(t, err)
	require.NoError(t, ch.Close())

	// The publisher re-declares nothing: wait for the consumer to declare
	// and bind the queue again and consume from it (it binds before it
	// consumes).
	require.Eventually(t, func() bool {
		ch, err := b.conn.Channel()
		require.NoError(t, err)
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(b.top.Queue(), true, false, false, false, nil)
		return err == nil && q.Consumers > 0
	}, 20*time.Second, 50*time.Millisecond, "the consumer did not come back on its queue")
	bodies := make([][]byte, 10)
	for i := range bodies {
		bodies[i] = body(t, fmt.Sprintf("later%d@example.com", i), 100+i)
	}
	b.publish(t, bodies...)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 20})
}

// A body that is not valid UTF-8 is an invalid message, dead-lettered byte
// for byte as it came; nothing of it is stored or sent to the CRM.
func TestInvalidUTF8IsDeadLetteredAsItCame(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	bad := [][]byte{
		[]byte("{\"email\":\"bad\xffutf8@poison.test\",\"name\":\"x\"}"),
		[]byte("{\"email\":\"jose@poison.test\",\"name\":\"Jos\xe9\"}"),
	}
	b.publish(t, bad[0], bad[1], body(t, "fine@example.com", 1))
	b.startWorker(t, "w1", nil)
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 1})

	var dead [][]byte
	require.Eventually(t, func() bool {
		for _, d := range b.deadLetters(t) {
			require.Equal(t, reasonInvalidMessage, d.Headers["x-death-reason"])
			dead = append(dead, d.Body)
		}
		return len(dead) == 2
	}, 10*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, bad, dead, "dead letters keep the body byte for byte")
	var stored int
	require.NoError(t, b.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM customers`).Scan(&stored))
	require.Equal(t, 1, stored, "nothing of an invalid body is stored")
	require.Equal(t, 1, b.crm.Stats().Created)
}

// A forced shutdown (the CRM slower than --crm-timeout, the shutdown timeout
// expiring with calls in flight) costs an attempt and keeps a lease only for
// a customer whose request reached the CRM; the others get both back. Over
// repeated restarts, no customer the CRM never saw is dead-lettered.
func TestForcedShutdownKeepsAttemptsOnlyOfCallsMade(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Latency = 5 * time.Second // slower than --crm-timeout
	b := setup(t, cfg)
	var mu sync.Mutex
	seen := map[string]bool{} // idempotency keys that reached the CRM
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		b.crm.ServeHTTP(w, r)
	}))
	t.Cleanup(crmSrv.Close)
	seenCount := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	b.env["CRM_URL"] = crmSrv.URL
	b.env["CRM_TIMEOUT"] = "2s"
	b.env["CONSUMER_LEASE"] = "1m"
	b.env["CONSUMER_SHUTDOWN_TIMEOUT"] = "100ms"
	b.env["CONSUMER_CRM_CONCURRENCY"] = "4"
	b.env["CONSUMER_MAX_ATTEMPTS"] = "2"
	b.env["CONSUMER_CIRCUIT_FAILURES"] = "1000"
	b.env["CRM_BATCH_SIZE"] = "1" // the key travels in the header, where the CRM above sees it
	b.publishN(t, 100)

	for round := range 3 {
		before := seenCount()
		stop := b.startWorker(t, fmt.Sprintf("w%d", round), nil)
		// SIGTERM once calls are in flight; the shutdown timeout cuts them.
		require.Eventually(t, func() bool { return seenCount() > before }, 20*time.Second, 5*time.Millisecond)
		stop()

		rows, err := b.store.Pool().Query(t.Context(), `SELECT email, crm_attempts, coalesce(crm_lease_until > now(), false) FROM customers`)
		require.NoError(t, err)
		var email string
		var attempts int
		var leased bool
		held := 0
		_, err = pgx.ForEachRow(rows, []any{&email, &attempts, &leased}, func() error {
			if attempts > 0 || leased {
				held++
				mu.Lock()
				reached := seen[customer.IdempotencyKey(email)]
				mu.Unlock()
				require.True(t, reached, "round %d: %s has %d attempt(s), leased %v, and the CRM never saw it", round, email, attempts, leased)
			}
			return nil
		})
		require.NoError(t, err)
		t.Logf("round %d: %d customers with an attempt or a lease, %d seen by the CRM", round, held, seenCount())
	}
	for _, d := range b.deadLetters(t) {
		c, err := customer.Decode(d.Body)
		require.NoError(t, err)
		mu.Lock()
		reached := seen[customer.IdempotencyKey(c.Email)]
		mu.Unlock()
		require.True(t, reached, "%s was dead-lettered (%v) and the CRM never saw it", c.Email, d.Headers["x-death-reason"])
	}
}

// While the circuit is open, customers stored meanwhile go in without a
// lease: the workers waiting for the circuit count no attempt and hold
// nobody, and a stop does not wait for the circuit.
func TestCircuitOpenInsertsWithoutLease(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	b.env["CONSUMER_CIRCUIT_FAILURES"] = "1"
	b.env["CONSUMER_CIRCUIT_OPEN"] = "1h"
	b.env["CONSUMER_PREFETCH"] = "8"
	b.env["CONSUMER_BATCH_SIZE"] = "1" // eight runners, each may wait on the circuit
	b.env["CONSUMER_SHUTDOWN_TIMEOUT"] = "1h"
	b.crm.Outage(time.Hour)
	b.publish(t, body(t, "first@example.com", 1))
	stop := b.startWorker(t, "w1", nil)
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "CRM circuit open") }, time.Minute, 5*time.Millisecond)

	later := make([][]byte, 5)
	for i := range later {
		later[i] = body(t, fmt.Sprintf("later%d@example.com", i), i+2)
	}
	b.publish(t, later...)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, b.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM customers WHERE email LIKE 'later%'`).Scan(&n))
		return n == len(later)
	}, time.Minute, 10*time.Millisecond)

	var leased, attempts int
	require.NoError(t, b.store.Pool().QueryRow(t.Context(),
		`SELECT count(*) FILTER (WHERE crm_lease_owner IS NOT NULL), coalesce(sum(crm_attempts), 0) FROM customers WHERE email LIKE 'later%'`).Scan(&leased, &attempts))
	require.Zero(t, leased, "customers stored while the circuit is open are not leased")
	require.Zero(t, attempts, "nor is an attempt counted for them")
	require.Equal(t, 1, b.crm.Stats().Failed, "only the call that opened the circuit was made")

	// Asked to stop, the waiting batches go back at once, not after
	// --shutdown-timeout (an hour here: the stop would not return).
	stop()
	require.Contains(t, b.logs.String(), "msg=stopped")
}
