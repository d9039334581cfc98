package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
)

const summary = `mockcrm is a flaky CRM for demos and tests.

Usage:
  mockcrm [flags]           serve until SIGINT or SIGTERM
  mockcrm health [--addr]   ask the mockcrm at --addr whether it is up: exit 0 if so, 1 if not

It serves:
  POST /customers            create a customer (Idempotency-Key required)
  POST /customers/batch      create up to --max-batch customers: {"customers": [{..., "idempotency_key": "..."}]},
                             one result per customer, in order (201, 200 replay, 409, 4xx, 503)
  GET  /customers/{email}    the stored customer
  GET  /stats[?emails=1]     counters; Duplicates is empty when every customer was created once
  POST /admin/config         change settings at runtime (JSON, snake_case, partial)
  POST /admin/outage?for=30s answer 503 to everything for a while
  POST /admin/reset          forget customers, keys and counters
  GET  /healthz`

// config is everything mockcrm can be told, filled by defaults, then
// environment variables, then flags.
type config struct {
	// Addr is the listen address. Default 127.0.0.1:8081 (":8081" in compose).
	Addr string
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown. Default 5s.
	ShutdownTimeout time.Duration
	// LogFormat is "text" (default) or "json"; LogLevel debug, info
	// (default), warn or error; debug logs every request.
	LogFormat, LogLevel string
	// Mock is the flakiness: fail rate 0.1 and latency 20ms by default.
	Mock crmmock.Config
	// Version prints the version and exits (--version; no variable).
	Version bool
	// Seed is Mock.Seed as the flag reads it.
	Seed int
}

func defaultConfig() config {
	mock := crmmock.DefaultConfig()
	mock.FailRate = 0.1
	mock.Latency = 20 * time.Millisecond
	return config{
		Addr:            "127.0.0.1:8081",
		ShutdownTimeout: 5 * time.Second,
		LogFormat:       "text",
		LogLevel:        "info",
		Mock:            mock,
	}
}

// flags binds every setting to its flag and environment variable.
func flags(cfg *config, getenv func(string) string, output io.Writer) *envflag.Set {
	d := defaultConfig()
	m := &cfg.Mock
	s := envflag.New("mockcrm", summary, getenv, output)
	s.String(&cfg.Addr, "addr", "MOCKCRM_ADDR", d.Addr, "HTTP listen `address`")
	s.Float64(&m.FailRate, "fail-rate", "MOCKCRM_FAIL_RATE", d.Mock.FailRate, "share of requests (single or whole batches) answered 503 before doing anything (0..1)")
	s.Float64(&m.CustomerFailRate, "customer-fail-rate", "MOCKCRM_CUSTOMER_FAIL_RATE", d.Mock.CustomerFailRate, "share of customers answered 503 on their own, nothing created (0..1)")
	s.Float64(&m.FailAfterCreateRate, "lost-reply-rate", "MOCKCRM_LOST_REPLY_RATE", d.Mock.FailAfterCreateRate, "share of requests that created someone answered 503 afterwards: the reply is lost (0..1)")
	s.Float64(&m.FailAfterCreateRate, "fail-after-create-rate", "MOCKCRM_FAIL_AFTER_CREATE_RATE", d.Mock.FailAfterCreateRate, "the former name of --lost-reply-rate")
	s.Duration(&m.Latency, "latency", "MOCKCRM_LATENCY", d.Mock.Latency, "latency added to every request")
	s.Duration(&m.LatencyJitter, "latency-jitter", "MOCKCRM_LATENCY_JITTER", d.Mock.LatencyJitter, "random extra latency, up to this much")
	s.Float64(&m.RateLimit, "rate-limit", "MOCKCRM_RATE_LIMIT", d.Mock.RateLimit, "requests per second accepted from all callers together, above it 429 + Retry-After (0 = no limit)")
	s.Int(&m.MaxBatch, "max-batch", "MOCKCRM_MAX_BATCH", d.Mock.MaxBatch, "most customers in one batch request, above it 413")
	s.List(&m.RejectDomains, "reject-domains", "MOCKCRM_REJECT_DOMAINS", nil, "comma-separated email domains answered 422")
	s.Bool(&m.UniqueEmail, "unique-email", "MOCKCRM_UNIQUE_EMAIL", d.Mock.UniqueEmail, "answer 409 to an existing email under a new Idempotency-Key")
	s.String(&m.Token, "token", "MOCKCRM_TOKEN", "", "bearer token required on /customers (empty = none; prefer the variable)")
	s.Int(&cfg.Seed, "seed", "MOCKCRM_SEED", 0, "random seed for injected failures (0 = time-based)")
	s.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "MOCKCRM_SHUTDOWN_TIMEOUT", d.ShutdownTimeout, "bound on the wait for in-flight requests at shutdown")
	s.String(&cfg.LogFormat, "log-format", "LOG_FORMAT", d.LogFormat, "log format: "+logging.Formats)
	s.String(&cfg.LogLevel, "log-level", "LOG_LEVEL", d.LogLevel, "log level: debug, info, warn, error")
	s.Bool(&cfg.Version, "version", "", false, "print the version and exit")
	return s
}

// loadConfig reads defaults, then environment, then flags. It returns
// flag.ErrHelp, after printing the usage to output, when help was asked for.
func loadConfig(args []string, getenv func(string) string, output io.Writer) (config, error) {
	var cfg config
	s := flags(&cfg, getenv, output)
	if err := s.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.Version {
		return cfg, nil
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (see --help)", rest[0])
	}
	cfg.Mock.RejectDomains = crmmock.NormalizeDomains(cfg.Mock.RejectDomains)
	cfg.Mock.Seed = int64(cfg.Seed)
	return cfg, cfg.validate()
}

func (c config) validate() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr must not be empty")
	case c.Mock.FailRate < 0 || c.Mock.FailRate > 1:
		return fmt.Errorf("--fail-rate must be between 0 and 1, got %v", c.Mock.FailRate)
	case c.Mock.CustomerFailRate < 0 || c.Mock.CustomerFailRate > 1:
		return fmt.Errorf("--customer-fail-rate must be between 0 and 1, got %v", c.Mock.CustomerFailRate)
	case c.Mock.FailAfterCreateRate < 0 || c.Mock.FailAfterCreateRate > 1:
		return fmt.Errorf("--lost-reply-rate must be between 0 and 1, got %v", c.Mock.FailAfterCreateRate)
	case c.Mock.Latency < 0:
		return fmt.Errorf("--latency must not be negative, got %s", c.Mock.Latency)
	case c.Mock.LatencyJitter < 0:
		return fmt.Errorf("--latency-jitter must not be negative, got %s", c.Mock.LatencyJitter)
	case c.Mock.RateLimit < 0:
		return fmt.Errorf("--rate-limit must not be negative, got %v", c.Mock.RateLimit)
	case c.Mock.MaxBatch < 1:
		return fmt.Errorf("--max-batch must be 1 or more, got %d", c.Mock.MaxBatch)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	}
	return nil
}
