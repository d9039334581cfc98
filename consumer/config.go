package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// Services says where the broker and the database are and names the
// topology: what every subcommand that touches them is told, bound to its
// flags once (bindServices).
type Services struct {
	// AMQPURL is the broker. Default amqp://guest:guest@localhost:5672/.
	AMQPURL string
	// DatabaseURL is Postgres. Default
	// postgres://postgres:postgres@localhost:5432/customers?sslmode=disable.
	DatabaseURL string
	// DBMaxConns caps the Postgres pool. Default 8.
	DBMaxConns int
	// ConnectTimeout bounds the first connection to each service at start;
	// a running consumer retries later losses for ever. Default 30s.
	ConnectTimeout time.Duration
	// QueuePrefix, RetryDelays and DeliveryLimit define the topology and
	// must match the producer's. Defaults: rabbit.Topology's.
	QueuePrefix   string
	RetryDelays   []time.Duration
	DeliveryLimit int
}

// Config is what a consuming worker is told. Zero fields take the default
// their comment gives (WithDefaults); validate names the flag of a field
// that is wrong.
type Config struct {
	Services
	// CRMURL is the CRM's base URL. Default http://localhost:8081.
	CRMURL string
	// CRMToken is sent as a bearer token when set. Never logged.
	CRMToken string
	// CRMTimeout bounds one CRM call. Default 10s.
	CRMTimeout time.Duration
	// CRMConcurrency bounds the CRM requests in flight. Default 32.
	CRMConcurrency int
	// CRMKind is the CRM's API: generic (default) or hubspot.
	CRMKind string
	// CRMBatchSize is the most customers in one CRM request; 1 sends each
	// customer in a call of its own. Default 100.
	CRMBatchSize int
	// CRMRate is the CRM requests per second of all consumers together,
	// kept in Postgres (package crmrate); 0, the default, means no limit.
	CRMRate float64
	// CRMBurst is the most requests in any CRMBurst/CRMRate seconds.
	// Default: CRMRate rounded up.
	CRMBurst int
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
	// customer; it must outlast a CRM call. Default 2m.
	Lease time.Duration
	// ReconnectMax caps the wait between reconnection attempts. Default 30s.
	ReconnectMax time.Duration
	// ShutdownTimeout bounds the finishing of in-flight work after
	// SIGTERM. Default 30s.
	ShutdownTimeout time.Duration
	// LogEvery is the interval of the progress line (received, stored,
	// synced, retried, dead-lettered, rate), written only when something
	// happened. Default 10s; negative: never.
	LogEvery time.Duration
	// Name identifies this consumer in leases, dead letters and the
	// management UI. Default host-pid.
	Name string
	// HTTPAddr is where /metrics, /healthz and /readyz are served; "off"
	// serves nothing. Default 127.0.0.1:9090 (":9090" in compose).
	HTTPAddr string
}

// Defaults of the flags whose zero value means something else: the local
// services of `make infra`, whose development credentials the README states.
//
//nolint:gosec // development defaults, not secrets
const (
	defaultAMQPURL     = "amqp://guest:guest@localhost:5672/"
	defaultDatabaseURL = "postgres://postgres:postgres@localhost:5432/customers?sslmode=disable"
	defaultHTTPAddr    = "127.0.0.1:9090"
	defaultMgmtURL     = "http://guest:guest@localhost:15672"
	httpOff            = "off"
)

// WithDefaults returns a copy of s with every zero field set to its default.
func (s Services) WithDefaults() Services {
	top := rabbit.Topology{Prefix: s.QueuePrefix, RetryDelays: s.RetryDelays, DeliveryLimit: s.DeliveryLimit}.WithDefaults()
	s.QueuePrefix, s.RetryDelays, s.DeliveryLimit = top.Prefix, top.RetryDelays, top.DeliveryLimit
	s.AMQPURL = cmp(s.AMQPURL, defaultAMQPURL)
	s.DatabaseURL = cmp(s.DatabaseURL, defaultDatabaseURL)
	s.DBMaxConns = cmp(s.DBMaxConns, 8)
	s.ConnectTimeout = cmp(s.ConnectTimeout, 30*time.Second)
	return s
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Services = c.Services.WithDefaults()
	c.CRMURL = cmp(c.CRMURL, "http://localhost:8081")
	c.CRMTimeout = cmp(c.CRMTimeout, 10*time.Second)
	c.CRMConcurrency = cmp(c.CRMConcurrency, 32)
	c.CRMKind = cmp(c.CRMKind, "generic")
	c.CRMBatchSize = cmp(c.CRMBatchSize, defaultCRMBatchSize)
	c.Prefetch = cmp(c.Prefetch, 512)
	c.BatchWait = cmp(c.BatchWait, 50*time.Millisecond)
	c.CircuitFailures = cmp(c.CircuitFailures, 10)
	c.CircuitOpen = cmp(c.CircuitOpen, 5*time.Second)
	c.Lease = cmp(c.Lease, 2*time.Minute)
	c.ReconnectMax = cmp(c.ReconnectMax, 30*time.Second)
	c.ShutdownTimeout = cmp(c.ShutdownTimeout, 30*time.Second)
	c.LogEvery = cmp(c.LogEvery, 10*time.Second)
	c.HTTPAddr = cmp(c.HTTPAddr, defaultHTTPAddr)
	return c.withDerived()
}

// withDerived sets the defaults that follow from other fields. The flags
// leave these zero (and all others set), so that an explicit --prefetch 0
// is an error rather than a default.
func (c Config) withDerived() Config {
	c.BatchSize = cmp(c.BatchSize, min(256, c.Prefetch))
	c.MaxAttempts = cmp(c.MaxAttempts, len(c.RetryDelays)+1)
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = host + "-" + strconv.Itoa(os.Getpid())
	}
	return c
}

// cmp is v, or def when v is the zero value.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (s Services) validate() error {
	if s.DeliveryLimit < 1 {
		return fmt.Errorf("--delivery-limit %d: want 1 or more", s.DeliveryLimit)
	}
	if _, err := rabbit.ParseURLs(s.AMQPURL); err != nil {
		return fmt.Errorf("--amqp-url: %w", err)
	}
	return s.validateDatabase()
}

// validateDatabase checks the fields bindDatabase binds.
func (s Services) validateDatabase() error {
	switch {
	case s.ConnectTimeout <= 0:
		return fmt.Errorf("--connect-timeout %s: want a positive duration", s.ConnectTimeout)
	case s.DBMaxConns < 2:
		return fmt.Errorf("--db-max-conns %d: want 2 or more", s.DBMaxConns)
	}
	return nil
}

func (c Config) validate() error {
	if err := c.Services.validate(); err != nil {
		return err
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--crm-timeout", c.CRMTimeout},
		{"--batch-wait", c.BatchWait},
		{"--lease", c.Lease},
		{"--circuit-open", c.CircuitOpen},
		{"--reconnect-max", c.ReconnectMax},
		{"--shutdown-timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s %s: want a positive duration", d.flag, d.v)
		}
	}
	switch {
	case c.Prefetch < 1 || c.Prefetch > 65535:
		return fmt.Errorf("--prefetch %d: want 1 to 65535", c.Prefetch)
	case c.BatchSize < 1 || c.BatchSize > c.Prefetch:
		return fmt.Errorf("--batch-size %d: want 1 to --prefetch (%d)", c.BatchSize, c.Prefetch)
	case c.CRMConcurrency < 1:
		return fmt.Errorf("--crm-concurrency %d: want 1 or more", c.CRMConcurrency)
	case c.CRMKind != "generic" && c.CRMKind != "hubspot":
		return fmt.Errorf("--crm-kind %q: want %s", c.CRMKind, crm.Kinds)
	case c.CRMBatchSize < 1 || c.CRMBatchSize > crm.DefaultMaxBatch:
		return fmt.Errorf("--crm-batch-size %d: want 1 to %d", c.CRMBatchSize, crm.DefaultMaxBatch)
	case c.CRMRate < 0 || math.IsNaN(c.CRMRate) || math.IsInf(c.CRMRate, 0):
		return fmt.Errorf("--crm-rate %v: want 0 (no limit) or more requests per second", c.CRMRate)
	case c.CRMBurst < 0:
		return fmt.Errorf("--crm-burst %d: want 1 or more (0: the rate)", c.CRMBurst)
	case c.CircuitFailures < 1:
		return fmt.Errorf("--circuit-failures %d: want 1 or more", c.CircuitFailures)
	case c.MaxAttempts < 1:
		return fmt.Errorf("--max-attempts %d: want 1 or more", c.MaxAttempts)
	case c.Lease <= c.CRMTimeout:
		return fmt.Errorf("--lease %s must be longer than --crm-timeout %s, or a slow call could outlive its lease", c.Lease, c.CRMTimeout)
	}
	if c.HTTPAddr != httpOff {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr %q: want host:port, :port, or off for none: %w", c.HTTPAddr, err)
		}
	}
	return nil
}

func (s Services) topology() rabbit.Topology {
	return rabbit.Topology{Prefix: s.QueuePrefix, RetryDelays: s.RetryDelays, DeliveryLimit: s.DeliveryLimit, Replicas: rabbit.Replicas(s.AMQPURL)}.WithDefaults()
}

func (s Services) store() pgstore.Config {
	return pgstore.Config{URL: s.DatabaseURL, MaxConns: int32(min(s.DBMaxConns, 1<<20))} //nolint:gosec // bounded above
}

// flags is one subcommand's flag set with the flags every subcommand has.
type flags struct {
	*envflag.Set
	LogFormat, LogLevel string
}

func newFlags(name, summary string, getenv func(string) string, stderr io.Writer) *flags {
	f := &flags{Set: envflag.New(name, summary, getenv, stderr)}
	f.String(&f.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	f.String(&f.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	return f
}

// parse reads the environment and args; it refuses arguments left over.
func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if rest := f.FlagSet().Args(); len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q (flags go after the subcommand)", rest[0])
	}
	return nil
}

// logger parses args, checks them with validate, and returns the logger
// the flags ask for: a subcommand's first lines. validate reads the
// parsed values: a pointer method or a closure, not a copy taken before.
func (f *flags) logger(args []string, validate func() error, stderr io.Writer) (*slog.Logger, error) {
	if err := f.parse(args); err != nil {
		return nil, err
	}
	if err := validate(); err != nil {
		return nil, err
	}
	return logging.New(stderr, f.LogFormat, f.LogLevel)
}

// bindDatabase binds the flags of the database alone (migrate).
func (f *flags) bindDatabase(s *Services) {
	d := Services{}.WithDefaults()
	f.String(&s.DatabaseURL, "database-url", "DATABASE_URL", d.DatabaseURL, "PostgreSQL `URL`")
	f.Int(&s.DBMaxConns, "db-max-conns", "DB_MAX_CONNS", d.DBMaxConns, "PostgreSQL connections at most")
	f.Duration(&s.ConnectTimeout, "connect-timeout", "CONSUMER_CONNECT_TIMEOUT", d.ConnectTimeout, "how long to try the first connection to RabbitMQ and PostgreSQL")
}

// bindServices binds the flags of Services.
func (f *flags) bindServices(s *Services) {
	d := Services{}.WithDefaults()
	f.String(&s.AMQPURL, "amqp-url", "AMQP_URL", d.AMQPURL, "RabbitMQ `URL`s, comma-separated: the nodes of a cluster, tried in turn")
	f.bindDatabase(s)
	rabbit.BindTopologyFlags(f.Set, &s.QueuePrefix, &s.RetryDelays, &s.DeliveryLimit)
}

// bindWorker binds the flags of a consuming worker's Config.
func (f *flags) bindWorker(c *Config) {
	d := Config{}.WithDefaults()
	f.bindServices(&c.Services)
	f.String(&c.CRMURL, "crm-url", "CRM_URL", d.CRMURL, "CRM base `URL`")
	f.String(&c.CRMToken, "crm-token", "CRM_TOKEN", "", "CRM bearer token (prefer the environment variable)")
	f.DefaultText("crm-token", "none")
	f.Duration(&c.CRMTimeout, "crm-timeout", "CRM_TIMEOUT", d.CRMTimeout, "timeout of one CRM call")
	f.Int(&c.CRMConcurrency, "crm-concurrency", "CONSUMER_CRM_CONCURRENCY", d.CRMConcurrency, "CRM requests in flight at most")
	f.String(&c.CRMKind, "crm-kind", "CRM_KIND", d.CRMKind, "the CRM's API: "+crm.Kinds)
	f.Int(&c.CRMBatchSize, "crm-batch-size", "CRM_BATCH_SIZE", d.CRMBatchSize, "customers per CRM request (1: one call per customer)")
	f.Float64(&c.CRMRate, "crm-rate", "CRM_RATE", 0, "CRM requests per second of all consumers together, shared through PostgreSQL (0: no limit)")
	f.DefaultText("crm-rate", "no limit")
	f.Int(&c.CRMBurst, "crm-burst", "CRM_BURST", 0, "most CRM requests in any burst/rate seconds")
	f.DefaultText("crm-burst", "the rate")
	f.Int(&c.Prefetch, "prefetch", "CONSUMER_PREFETCH", d.Prefetch, "deliveries held at once")
	f.Int(&c.BatchSize, "batch-size", "CONSUMER_BATCH_SIZE", 0, "deliveries per batch (one insert, which leases first inserts, one lease of the others, one write of CRM results); prefetch/batch-size batches run side by side")
	f.DefaultText("batch-size", "256, or --prefetch if smaller")
	f.Duration(&c.BatchWait, "batch-wait", "CONSUMER_BATCH_WAIT", d.BatchWait, "how long a batch waits to fill after its first delivery")
	f.Int(&c.MaxAttempts, "max-attempts", "CONSUMER_MAX_ATTEMPTS", 0, "CRM attempts per customer before it is dead-lettered")
	f.DefaultText("max-attempts", "retry delays + 1")
	f.Int(&c.CircuitFailures, "circuit-failures", "CONSUMER_CIRCUIT_FAILURES", d.CircuitFailures, "transient CRM failures in a row that open the circuit (deliveries wait, no attempts burned)")
	f.Duration(&c.CircuitOpen, "circuit-open", "CONSUMER_CIRCUIT_OPEN", d.CircuitOpen, "how long the CRM circuit stays open before a probe")
	f.Duration(&c.Lease, "lease", "CONSUMER_LEASE", d.Lease, "how long a consumer holds a customer while calling the CRM")
	f.Duration(&c.ReconnectMax, "reconnect-max", "CONSUMER_RECONNECT_MAX", d.ReconnectMax, "longest wait between reconnection attempts")
	f.Duration(&c.ShutdownTimeout, "shutdown-timeout", "CONSUMER_SHUTDOWN_TIMEOUT", d.ShutdownTimeout, "time allowed to finish in-flight work after SIGTERM")
	f.Duration(&c.LogEvery, "log-every", "CONSUMER_LOG_EVERY", d.LogEvery, "interval of the progress log line, written only when something happened (negative: never)")
	f.String(&c.Name, "name", "CONSUMER_NAME", "", "this consumer's name in leases and logs")
	f.DefaultText("name", "host-pid")
	f.String(&c.HTTPAddr, "http-addr", "CONSUMER_HTTP_ADDR", d.HTTPAddr, "`address` of /metrics, /healthz and /readyz (off: none)")
}

// parseWorker reads a consuming worker's Config.
func parseWorker(args []string, getenv func(string) string, stderr io.Writer) (Config, *flags, error) {
	var c Config
	var version bool
	f := newFlags("consumer", summary, getenv, stderr)
	f.bindWorker(&c)
	f.Bool(&version, "version", "", false, "print the version and exit")
	if err := f.parse(args); err != nil {
		return Config{}, nil, err
	}
	if version {
		return Config{}, f, errVersion
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = httpOff // an empty variable reads as unset: --http-addr "" says none too
	}
	c = c.withDerived()
	return c, f, c.validate()
}

// errVersion asks run to print the version instead of running.
var errVersion = errors.New("version asked")
