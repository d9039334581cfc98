package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/rabbit"
)

const summary = `consumer takes customers off RabbitMQ, stores each once in PostgreSQL and
creates each once in the CRM. Run as many consumers as you like, on any hosts.

Usage:
  consumer [flags]            consume until SIGINT or SIGTERM; serves /metrics,
                              /healthz and /readyz on --http-addr
  consumer migrate [flags]    apply the database migrations, then exit
  consumer status [--json]    print queue depths and customers per CRM state
  consumer replay [--reason R] [--limit N]
                              move dead letters back to the work queue (after a fix),
                              their customers back to pending; says how many`

// Config is everything a consumer is told. Field comments give defaults.
type Config struct {
	// AMQPURL is the broker. Default amqp://guest:guest@localhost:5672/.
	AMQPURL string
	// DatabaseURL is Postgres. Default postgres://postgres:postgres@localhost:5432/customers?sslmode=disable.
	DatabaseURL string
	// DBMaxConns caps the Postgres pool. Default 8.
	DBMaxConns int
	// CRMURL is the CRM's base URL. Default http://localhost:8081.
	CRMURL string
	// CRMToken is sent as a bearer token when set. Never logged.
	CRMToken string
	// CRMTimeout bounds one CRM call. Default 10s.
	CRMTimeout time.Duration
	// CRMConcurrency bounds the CRM calls in flight. Default 32.
	CRMConcurrency int
	// Prefetch is the most deliveries held at once. Default 512.
	Prefetch int
	// BatchSize is the most deliveries in one batch; Prefetch/BatchSize
	// batches run side by side. Default: 256, or Prefetch when smaller.
	BatchSize int
	// BatchWait is how long a batch waits to fill after its first
	// delivery. Default 50ms.
	BatchWait time.Duration
	// MaxAttempts is how many CRM calls a customer gets before it is
	// marked failed and dead-lettered. Default: one more than the retry
	// delays.
	MaxAttempts int
	// CircuitFailures is how many transient CRM failures in a row open the
	// circuit. Default 10.
	CircuitFailures int
	// CircuitOpen is how long the circuit stays open before a probe.
	// Default 5s.
	CircuitOpen time.Duration
	// Lease is how long a worker holds the right to call the CRM for a
	// customer; it must outlast a batch's CRM calls. Default 2m.
	Lease time.Duration
	// ConnectTimeout bounds the first connection to each service at
	// start; later losses are retried for ever. Default 30s.
	ConnectTimeout time.Duration
	// ReconnectMax caps the wait between reconnection attempts. Default 30s.
	ReconnectMax time.Duration
	// ShutdownTimeout bounds the finishing of in-flight work after
	// SIGTERM. Default 30s.
	ShutdownTimeout time.Duration
	// QueuePrefix, RetryDelays and DeliveryLimit define the topology and
	// must match the producer's.
	QueuePrefix   string
	RetryDelays   []time.Duration
	DeliveryLimit int
	// ReplayReason and ReplayLimit select the dead letters `consumer replay`
	// moves back: all of them by default.
	ReplayReason string
	ReplayLimit  int
	// Name identifies this consumer in leases, dead letters and the
	// management UI. Default host-pid.
	Name string
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat, LogLevel string
	// HTTPAddr is where /metrics, /healthz and /readyz are served; "off"
	// (or empty) serves nothing. Default 127.0.0.1:9090 (":9090" in compose).
	HTTPAddr string
	// ManagementURL is the RabbitMQ management API that `status` reads
	// queue depths from, credentials included; when it does not answer,
	// status falls back to AMQP. Default http://guest:guest@localhost:15672.
	ManagementURL string
	// JSON makes `status` print one JSON object instead of tables.
	JSON bool
	// Version prints the version and exits.
	Version bool
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	defTop := rabbit.Topology{}.WithDefaults()
	s := envflag.New("consumer", summary, getenv, stderr)
	s.String(&c.AMQPURL, "amqp-url", "AMQP_URL", "amqp://guest:guest@localhost:5672/", "RabbitMQ `URL`")
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", "postgres://postgres:postgres@localhost:5432/customers?sslmode=disable", "PostgreSQL `URL`")
	s.Int(&c.DBMaxConns, "db-max-conns", "DB_MAX_CONNS", 8, "PostgreSQL connections at most")
	s.String(&c.CRMURL, "crm-url", "CRM_URL", "http://localhost:8081", "CRM base `URL`")
	s.String(&c.CRMToken, "crm-token", "CRM_TOKEN", "", "CRM bearer token (prefer the environment variable)")
	s.Duration(&c.CRMTimeout, "crm-timeout", "CRM_TIMEOUT", 10*time.Second, "timeout of one CRM call")
	s.Int(&c.CRMConcurrency, "crm-concurrency", "CONSUMER_CRM_CONCURRENCY", 32, "CRM calls in flight at most")
	s.Int(&c.Prefetch, "prefetch", "CONSUMER_PREFETCH", 512, "deliveries held at once")
	s.Int(&c.BatchSize, "batch-size", "CONSUMER_BATCH_SIZE", 0, "deliveries per batch (one insert, one lease, one settle); prefetch/batch-size batches run side by side (default: 256, or --prefetch if smaller)")
	s.Duration(&c.BatchWait, "batch-wait", "CONSUMER_BATCH_WAIT", 50*time.Millisecond, "how long a batch waits to fill after its first delivery")
	s.Int(&c.MaxAttempts, "max-attempts", "CONSUMER_MAX_ATTEMPTS", 0, "CRM attempts per customer before it is dead-lettered (default: retry delays + 1)")
	s.Int(&c.CircuitFailures, "circuit-failures", "CONSUMER_CIRCUIT_FAILURES", 10, "transient CRM failures in a row that open the circuit (deliveries wait, no attempts burned)")
	s.Duration(&c.CircuitOpen, "circuit-open", "CONSUMER_CIRCUIT_OPEN", 5*time.Second, "how long the CRM circuit stays open before a probe")
	s.Duration(&c.Lease, "lease", "CONSUMER_LEASE", 2*time.Minute, "how long a consumer holds a customer while calling the CRM")
	s.Duration(&c.ConnectTimeout, "connect-timeout", "CONSUMER_CONNECT_TIMEOUT", 30*time.Second, "how long to try the first connection to RabbitMQ and PostgreSQL")
	s.Duration(&c.ReconnectMax, "reconnect-max", "CONSUMER_RECONNECT_MAX", 30*time.Second, "longest wait between reconnection attempts")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "CONSUMER_SHUTDOWN_TIMEOUT", 30*time.Second, "time allowed to finish in-flight work after SIGTERM")
	s.String(&c.QueuePrefix, "queue-prefix", "QUEUE_PREFIX", defTop.Prefix, "prefix of the exchange and queue names")
	s.Durations(&c.RetryDelays, "retry-delays", "RETRY_DELAYS", defTop.RetryDelays, "backoff steps of the retry queues (must match the producer's)")
	s.Int(&c.DeliveryLimit, "delivery-limit", "DELIVERY_LIMIT", defTop.DeliveryLimit, "deliveries of one message before the broker dead-letters it (must match the producer's)")
	s.String(&c.ReplayReason, "reason", "REPLAY_REASON", "", "replay only: move only dead letters with this reason (crm_attempts_exhausted, crm_rejected, invalid_message, database_rejected, delivery_limit)")
	s.Int(&c.ReplayLimit, "limit", "REPLAY_LIMIT", 0, "replay only: move at most this many dead letters (0: all)")
	s.String(&c.Name, "name", "CONSUMER_NAME", "", "this consumer's name in leases and logs (default host-pid)")
	s.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	s.String(&c.HTTPAddr, "http-addr", "CONSUMER_HTTP_ADDR", "127.0.0.1:9090", "`address` of /metrics, /healthz and /readyz (off: none)")
	s.String(&c.ManagementURL, "management-url", "RABBITMQ_MANAGEMENT_URL", "http://guest:guest@localhost:15672", "RabbitMQ management API `URL` for status (falls back to AMQP when unreachable)")
	s.Bool(&c.JSON, "json", "", false, "status: print JSON instead of tables")
	s.Bool(&c.Version, "version", "", false, "print the version and exit")
	if err := s.Parse(args); err != nil {
		return Config{}, err
	}
	if c.Version {
		return c, nil
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags go after the subcommand)", rest[0])
	}
	if c.BatchSize == 0 {
		c.BatchSize = min(256, c.Prefetch)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = len(c.RetryDelays) + 1
	}
	if c.HTTPAddr == "off" {
		// An empty variable reads as unset, so the environment says "off".
		c.HTTPAddr = ""
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = host + "-" + strconv.Itoa(os.Getpid())
	}
	return c, c.validate()
}

func (c Config) validate() error {
	positive := map[string]time.Duration{
		"--crm-timeout": c.CRMTimeout, "--batch-wait": c.BatchWait, "--lease": c.Lease,
		"--connect-timeout": c.ConnectTimeout, "--circuit-open": c.CircuitOpen, "--reconnect-max": c.ReconnectMax, "--shutdown-timeout": c.ShutdownTimeout,
	}
	for name, d := range positive {
		if d <= 0 {
			return fmt.Errorf("%s %s: want a positive duration", name, d)
		}
	}
	switch {
	case c.Prefetch < 1 || c.Prefetch > 65535:
		return fmt.Errorf("--prefetch %d: want 1 to 65535", c.Prefetch)
	case c.BatchSize < 1 || c.BatchSize > c.Prefetch:
		return fmt.Errorf("--batch-size %d: want 1 to --prefetch (%d)", c.BatchSize, c.Prefetch)
	case c.CRMConcurrency < 1:
		return fmt.Errorf("--crm-concurrency %d: want 1 or more", c.CRMConcurrency)
	case c.DBMaxConns < 2:
		return fmt.Errorf("--db-max-conns %d: want 2 or more", c.DBMaxConns)
	case c.CircuitFailures < 1:
		return fmt.Errorf("--circuit-failures %d: want 1 or more", c.CircuitFailures)
	case c.MaxAttempts < 1:
		return fmt.Errorf("--max-attempts %d: want 1 or more", c.MaxAttempts)
	case c.DeliveryLimit < 1:
		return fmt.Errorf("--delivery-limit %d: want 1 or more", c.DeliveryLimit)
	case c.Lease <= c.CRMTimeout:
		return fmt.Errorf("--lease %s must be longer than --crm-timeout %s, or a slow call could outlive its lease", c.Lease, c.CRMTimeout)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr %q: want host:port, :port, or empty for none: %w", c.HTTPAddr, err)
		}
	}
	if u, err := url.Parse(c.ManagementURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("--management-url: want an http(s) URL such as http://guest:guest@localhost:15672")
	}
	return nil
}

func (c Config) topology() rabbit.Topology {
	return rabbit.Topology{Prefix: c.QueuePrefix, RetryDelays: c.RetryDelays, DeliveryLimit: c.DeliveryLimit}.WithDefaults()
}
