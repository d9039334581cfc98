package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/crm/crmmock"
)

// config is everything mockcrm can be told, filled by defaults, then
// environment variables, then flags.
type config struct {
	// Addr is the listen address. Default 127.0.0.1:8081 (":8081" in compose).
	Addr string
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown. Default 5s.
	ShutdownTimeout time.Duration
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// LogLevel is debug, info (default), warn or error; debug logs every request.
	LogLevel slog.Level
	// Mock is the flakiness: fail rate 0.1 and latency 20ms by default.
	Mock crmmock.Config
	// Version prints the version and exits (--version; no variable).
	Version bool
}

func defaultConfig() config {
	mock := crmmock.DefaultConfig()
	mock.FailRate = 0.1
	mock.Latency = 20 * time.Millisecond
	return config{
		Addr:            "127.0.0.1:8081",
		ShutdownTimeout: 5 * time.Second,
		LogFormat:       "text",
		LogLevel:        slog.LevelInfo,
		Mock:            mock,
	}
}

// option is one setting, reachable as --name and as the env variable.
type option struct {
	name, env, usage string
	value            flag.Value
}

func options(cfg *config) []option {
	return []option{
		{"addr", "MOCKCRM_ADDR", "HTTP listen address", stringValue{&cfg.Addr}},
		{"fail-rate", "MOCKCRM_FAIL_RATE", "share of requests answered 503 before doing anything (0..1)", floatValue{&cfg.Mock.FailRate}},
		{"fail-after-create-rate", "MOCKCRM_FAIL_AFTER_CREATE_RATE", "share of creations whose answer is replaced by a 503 (0..1)", floatValue{&cfg.Mock.FailAfterCreateRate}},
		{"latency", "MOCKCRM_LATENCY", "latency added to every /customers request", durationValue{&cfg.Mock.Latency}},
		{"latency-jitter", "MOCKCRM_LATENCY_JITTER", "random extra latency, up to this much", durationValue{&cfg.Mock.LatencyJitter}},
		{"rate-limit", "MOCKCRM_RATE_LIMIT", "requests per second accepted, above it 429 (0 = no limit)", floatValue{&cfg.Mock.RateLimit}},
		{"reject-domains", "MOCKCRM_REJECT_DOMAINS", "comma-separated email domains answered 422", listValue{&cfg.Mock.RejectDomains}},
		{"unique-email", "MOCKCRM_UNIQUE_EMAIL", "answer 409 to an existing email under a new Idempotency-Key", boolValue{&cfg.Mock.UniqueEmail}},
		{"token", "MOCKCRM_TOKEN", "bearer token required on /customers (empty = none)", secretValue{&cfg.Mock.Token}},
		{"seed", "MOCKCRM_SEED", "random seed for injected failures (0 = time-based)", intValue{&cfg.Mock.Seed}},
		{"shutdown-timeout", "MOCKCRM_SHUTDOWN_TIMEOUT", "bound on the wait for in-flight requests at shutdown", durationValue{&cfg.ShutdownTimeout}},
		{"log-format", "LOG_FORMAT", "log format: text or json", stringValue{&cfg.LogFormat}},
		{"log-level", "LOG_LEVEL", "log level: debug, info, warn or error", levelValue{&cfg.LogLevel}},
	}
}

// loadConfig reads defaults, then environment, then flags. It returns
// flag.ErrHelp when help was asked for.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	cfg := defaultConfig()
	opts := options(&cfg)

	fs := flag.NewFlagSet("mockcrm", flag.ContinueOnError)
	// Errors are returned, and help printed by the caller, not by flag.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, o := range opts {
		fs.Var(o.value, o.name, o.usage)
		if v := getenv(o.env); v != "" {
			if err := o.value.Set(v); err != nil {
				return cfg, fmt.Errorf("env %s (--%s) %q: %w", o.env, o.name, v, err)
			}
		}
	}
	fs.BoolVar(&cfg.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w (see --help)", err)
	}
	if cfg.Version {
		return cfg, nil
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	return cfg, cfg.validate()
}

func (c config) validate() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr must not be empty")
	case c.Mock.FailRate < 0 || c.Mock.FailRate > 1:
		return fmt.Errorf("--fail-rate must be between 0 and 1, got %v", c.Mock.FailRate)
	case c.Mock.FailAfterCreateRate < 0 || c.Mock.FailAfterCreateRate > 1:
		return fmt.Errorf("--fail-after-create-rate must be between 0 and 1, got %v", c.Mock.FailAfterCreateRate)
	case c.Mock.Latency < 0:
		return fmt.Errorf("--latency must not be negative, got %s", c.Mock.Latency)
	case c.Mock.LatencyJitter < 0:
		return fmt.Errorf("--latency-jitter must not be negative, got %s", c.Mock.LatencyJitter)
	case c.Mock.RateLimit < 0:
		return fmt.Errorf("--rate-limit must not be negative, got %v", c.Mock.RateLimit)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	}
	return nil
}

// writeUsage prints every flag with its environment variable and default.
func writeUsage(w io.Writer) error {
	defaults := defaultConfig()
	var b strings.Builder
	b.WriteString(`Usage: mockcrm [flags]

A flaky CRM for demos and tests. It serves:
  POST /customers            create a customer (Idempotency-Key required)
  GET  /customers/{email}    the stored customer
  GET  /stats[?emails=1]     counters; Duplicates is empty when every customer was created once
  POST /admin/config         change settings at runtime (JSON, snake_case, partial)
  POST /admin/outage?for=30s answer 503 to everything for a while
  POST /admin/reset          forget customers, keys and counters
  GET  /healthz

Every flag can also be set by its environment variable; a flag wins.

Flags:
`)
	for _, o := range options(&defaults) {
		def := o.value.String()
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(&b, "  --%s\n        %s\n        env %s, default %s\n", o.name, o.usage, o.env, def)
	}
	b.WriteString("  --version\n        print the version and exit\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

// secretValue never shows its value, not even in --help.
type secretValue struct{ p *string }

func (v secretValue) String() string {
	if v.p == nil || *v.p == "" {
		return ""
	}
	return "(set)"
}
func (v secretValue) Set(s string) error { *v.p = s; return nil }

type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return errors.New("not a number")
	}
	*v.p = f
	return nil
}

type intValue struct{ p *int64 }

func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*v.p = n
	return nil
}

type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean")
	}
	*v.p = b
	return nil
}

// IsBoolFlag lets --unique-email stand alone, as flag does for its own bools.
func (v boolValue) IsBoolFlag() bool { return true }

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New(`not a duration such as "250ms" or "1m"`)
	}
	*v.p = d
	return nil
}

type listValue struct{ p *[]string }

func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v listValue) Set(s string) error {
	*v.p = crmmock.NormalizeDomains(strings.Split(s, ","))
	return nil
}

type levelValue struct{ p *slog.Level }

func (v levelValue) String() string {
	if v.p == nil {
		return "info"
	}
	return strings.ToLower(v.p.String())
}

func (v levelValue) Set(s string) error {
	return v.p.UnmarshalText([]byte(strings.TrimSpace(s)))
}
