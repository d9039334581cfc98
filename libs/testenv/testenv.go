// Package testenv is the one place that knows how a test gets a real
// PostgreSQL and RabbitMQ:
//
//  1. TEST_DATABASE_URL / TEST_AMQP_URL when set;
//  2. otherwise the default local ports, when a server answers there;
//  3. otherwise a testcontainers-go container, when a Docker engine answers;
//  4. otherwise the test is skipped, except under CI=true, where it fails.
//
// Each test gets its own Postgres schema and its own queue names, so tests
// run in parallel and leave nothing behind.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/"
)

var (
	pgOnce, amqpOnce sync.Once
	pgURL, amqpURL   string
	pgErr, amqpErr   string
)

// unavailable skips the test, or fails it under CI=true where every service
// must be there.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}

// answers reports whether something accepts TCP connections at the URL's host.
func answers(rawURL, defaultPort string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// DatabaseURL returns the URL of a PostgreSQL server for tests.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
			if !answers(u, "5432") {
				pgErr = "TEST_DATABASE_URL is set but nothing answers at " + pgstore.Redact(u)
				return
			}
			pgURL = u
			return
		}
		if answers(defaultDatabaseURL, "5432") {
			pgURL = defaultDatabaseURL
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := tcpostgres.Run(ctx, "postgres:16-alpine", tcpostgres.WithDatabase("test"),
			tcpostgres.BasicWaitStrategies())
		if err != nil {
			pgErr = "no PostgreSQL: TEST_DATABASE_URL unset, nothing on 127.0.0.1:5432, and no container: " + err.Error()
			return
		}
		u, err := c.ConnectionString(ctx, "sslmode=disable")
		if err != nil {
			pgErr = "postgres container: " + err.Error()
			return
		}
		pgURL = u
	})
	if pgURL == "" {
		unavailable(t, pgErr)
	}
	return pgURL
}

// AMQPURL returns the URL of a RabbitMQ broker for tests.
func AMQPURL(t testing.TB) string {
	t.Helper()
	amqpOnce.Do(func() {
		if u := os.Getenv("TEST_AMQP_URL"); u != "" {
			if !answers(u, "5672") {
				amqpErr = "TEST_AMQP_URL is set but nothing answers at " + rabbit.Redact(u)
				return
			}
			amqpURL = u
			return
		}
		if answers(defaultAMQPURL, "5672") {
			amqpURL = defaultAMQPURL
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// The generic container: testcontainers' rabbitmq module stopped
		// following the core module's versions.
		c, err := testcontainers.Run(ctx, "rabbitmq:3.13-management-alpine",
			testcontainers.WithExposedPorts("5672/tcp", "15672/tcp"),
			testcontainers.WithWaitStrategy(wait.ForLog("Server startup complete").WithStartupTimeout(2*time.Minute)))
		if err != nil {
			amqpErr = "no RabbitMQ: TEST_AMQP_URL unset, nothing on 127.0.0.1:5672, and no container: " + err.Error()
			return
		}
		ep, err := c.PortEndpoint(ctx, "5672/tcp", "")
		if err != nil {
			amqpErr = "rabbitmq container: " + err.Error()
			return
		}
		amqpURL = "amqp://guest:guest@" + ep + "/"
	})
	if amqpURL == "" {
		unavailable(t, amqpErr)
	}
	return amqpURL
}

// Name returns a short name unique to this test run, fit for a schema, a
// queue prefix or a vhost.
func Name(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, base)
	if len(base) > 40 {
		base = base[:40]
	}
	return "t_" + base + "_" + hex.EncodeToString(b)
}

// Postgres returns the configuration of a new, empty schema of its own; the
// schema is dropped when the test ends.
func Postgres(t testing.TB) pgstore.Config {
	t.Helper()
	u := DatabaseURL(t)
	schema := Name(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	require.NoError(t, err, "connect to test database %s", pgstore.Redact(u))
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	return pgstore.Config{URL: u, Schema: schema, MaxConns: 4}
}

// MigratedPostgres is Postgres with the migrations applied.
func MigratedPostgres(t testing.TB) pgstore.Config {
	t.Helper()
	cfg := Postgres(t)
	_, err := pgstore.Migrate(context.Background(), cfg)
	require.NoError(t, err)
	return cfg
}

// DatabaseURLWithSchema returns the URL with the schema as its search_path,
// for binaries that take only a URL.
func DatabaseURLWithSchema(t testing.TB, cfg pgstore.Config) string {
	t.Helper()
	u, err := url.Parse(cfg.URL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", cfg.Schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Topology returns a topology with names of its own and the given retry
// steps (default: steps short enough for a test); its queues and exchanges
// are deleted when the test ends. A consumer run for the test must use the
// same steps, or its retry queues outlive the test.
func Topology(t testing.TB, retryDelays ...time.Duration) rabbit.Topology {
	t.Helper()
	u := AMQPURL(t)
	if len(retryDelays) == 0 {
		retryDelays = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}
	}
	top := rabbit.Topology{Prefix: Name(t), RetryDelays: retryDelays}.WithDefaults()
	t.Cleanup(func() { deleteTopology(t, u, top) })
	return top
}

// Publisher connects to the test broker, declares top and returns the
// connection and a confirm-mode publisher; both are closed when the test
// ends.
func Publisher(t testing.TB, top rabbit.Topology) (*amqp.Connection, *rabbit.Publisher) {
	t.Helper()
	conn, err := rabbit.Dial(context.Background(), AMQPURL(t), t.Name())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	pub, err := rabbit.NewPublisher(conn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	require.NoError(t, top.Declare(pub.Channel()))
	return conn, pub
}

// SeedsDir returns the folder of real sample exports (shared/data/seeds,
// beside the project's checkout): $SEEDS_DIR when set, else the first
// shared/data/seeds found in the working directory's ancestors. When there
// is none the test is skipped, or fails under CI=true.
func SeedsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SEEDS_DIR"); d != "" {
		if _, err := os.Stat(d); err != nil { //nolint:gosec // a folder the test runner names
			t.Fatalf("SEEDS_DIR=%s: %v", d, err)
		}
		return d
	}
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		candidate := filepath.Join(dir, "shared", "data", "seeds")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			unavailable(t, "no shared/data/seeds beside the checkout; set SEEDS_DIR")
			return ""
		}
		dir = parent
	}
}
