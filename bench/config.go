package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/rabbit"
)

const helpText = `bench measures the pipeline's throughput and memory next to the broker's own
limits, on the services at AMQP_URL and DATABASE_URL.

Usage: bench [--rows 1000000] [--scale 1,2,4] [--crm-batch-sizes 1,10,50,100]
             [--cluster-amqp-url URL,URL,URL] [--json volumes/bench/bench-results.json]

The table goes to stdout and, as JSON, to --json; logs go to stderr.`

// Config is everything the bench is told. Field comments give defaults.
type Config struct {
	// Rows is the size of the generated CSV. Default 1,000,000.
	Rows int
	// Consumers is the number of consumers of the main figures. Default 2.
	Consumers int
	// Scale lists the consumer counts of the scaling rows; empty skips
	// them. Default 1,2,4.
	Scale []int
	// CRMBatchSizes lists the consumers' --crm-batch-size of the end-to-end
	// batch rows; empty skips them. Default 1,10,50,100.
	CRMBatchSizes []int
	// ClusterURL is the comma-separated AMQP URL list of a RabbitMQ cluster
	// on which the producer, the consumers and end to end are measured again
	// (replication cost); empty, or a node not answering, skips those rows.
	// Default the three nodes of `make cluster`.
	ClusterURL string
	// Channels is the publishing channels of the broker probes, the
	// producer's --parallel. Default 4.
	Channels int
	// Windows are the confirm windows tried publish-only; the best is the
	// ceiling. Default 256,512,1024.
	Windows []int
	// ProducerWindow is the producer's --window; 0 keeps its default.
	ProducerWindow int
	// ProbeRows is the messages of each broker probe. Default min(Rows, 100000).
	ProbeRows int
	// Prefetch is the drain probe's prefetch per channel. Default 2000.
	Prefetch int
	// SmallDivisor sizes the second file (Rows / SmallDivisor) whose
	// producer and consumer memory is compared with the first's; 0 skips it.
	// Default 4.
	SmallDivisor int
	// DataDir caches the generated CSVs and holds the logs. Default volumes/bench.
	DataDir string
	// JSON is where the results are written. Default <DataDir>/bench-results.json.
	JSON string
	// AMQPURL is the broker. Default amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string
	// DatabaseURL names the Postgres server; its database is only used to
	// create Database. Default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	DatabaseURL string
	// Database is created for the run and dropped after it. Default custimport_bench.
	Database string
	// PhaseTimeout bounds each measured phase. Default 30m.
	PhaseTimeout time.Duration
	// Keep leaves the database, schemas and queues in place for inspection.
	Keep bool
	// Perf records the consumers and mockcrm of the end-to-end run with
	// perf(1), into <DataDir>/logs/e2e.perf.data and a report beside it.
	Perf bool
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat, LogLevel string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	var scale, windows, batches []string
	s := envflag.New("bench", helpText, getenv, stderr)
	s.Int(&c.Rows, "rows", "ROWS", 1_000_000, "rows of the generated CSV")
	s.Int(&c.Consumers, "consumers", "BENCH_CONSUMERS", 2, "consumers of the main figures")
	s.List(&scale, "scale", "BENCH_SCALE", []string{"1", "2", "4"}, "consumer `counts` of the scaling rows (empty: skip them)")
	s.List(&batches, "crm-batch-sizes", "BENCH_CRM_BATCH_SIZES", []string{"1", "10", "50", "100"}, "the consumers' CRM batch `sizes` of the end-to-end batch rows (empty: skip them)")
	s.String(&c.ClusterURL, "cluster-amqp-url", "BENCH_CLUSTER_AMQP_URL",
		"amqp://guest:guest@127.0.0.1:5681/,amqp://guest:guest@127.0.0.1:5682/,amqp://guest:guest@127.0.0.1:5683/", // the nodes of make cluster
		"comma-separated AMQP `URLs` of a RabbitMQ cluster to measure beside one node (empty: skip; not answering: skipped with a note)")
	s.Int(&c.Channels, "channels", "BENCH_CHANNELS", 4, "publishing channels of the probes and the producer")
	s.List(&windows, "windows", "BENCH_WINDOWS", []string{"256", "512", "1024"}, "confirm `windows` tried publish-only; the best is the ceiling")
	s.Int(&c.ProducerWindow, "producer-window", "BENCH_PRODUCER_WINDOW", 0, "the producer's --window (0: its default)")
	s.Int(&c.ProbeRows, "probe-rows", "BENCH_PROBE_ROWS", 0, "messages per broker probe (default min(rows, 100000))")
	s.Int(&c.Prefetch, "prefetch", "BENCH_PREFETCH", 2000, "prefetch per channel of the drain probes")
	s.Int(&c.SmallDivisor, "small-divisor", "BENCH_SMALL_DIVISOR", 4, "the second file has rows/this rows, to compare memory (0: skip)")
	s.String(&c.DataDir, "data-dir", "BENCH_DATA_DIR", filepath.Join("volumes", "bench"), "`folder` for generated CSVs and logs")
	s.String(&c.JSON, "json", "BENCH_JSON", "", "results `file` (default <data-dir>/bench-results.json)")
	s.String(&c.AMQPURL, "amqp-url", "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `URL`")
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL `URL` (the server; the bench creates its own database there)")
	s.String(&c.Database, "database", "BENCH_DATABASE", "custimport_bench", "database created for the run and dropped after it")
	s.Duration(&c.PhaseTimeout, "phase-timeout", "BENCH_PHASE_TIMEOUT", 30*time.Minute, "bound on each measured phase")
	s.Bool(&c.Keep, "keep", "BENCH_KEEP", false, "keep the database and queues after the run")
	s.Bool(&c.Perf, "perf", "BENCH_PERF", false, "profile the end-to-end run's consumers and mockcrm with perf(1)")
	s.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	if err := s.Parse(args); err != nil {
		return Config{}, err
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", rest[0])
	}
	var err error
	if c.Scale, err = ints("--scale", scale); err != nil {
		return Config{}, err
	}
	if c.Windows, err = ints("--windows", windows); err != nil {
		return Config{}, err
	}
	if c.CRMBatchSizes, err = ints("--crm-batch-sizes", batches); err != nil {
		return Config{}, err
	}
	if c.ClusterURL != "" {
		if _, err := rabbit.ParseURLs(c.ClusterURL); err != nil {
			return Config{}, fmt.Errorf("--cluster-amqp-url: %w", err)
		}
	}
	if c.ProbeRows == 0 {
		c.ProbeRows = min(c.Rows, 100_000)
	}
	if c.JSON == "" {
		c.JSON = filepath.Join(c.DataDir, "bench-results.json")
	}
	return c, c.validate()
}

func ints(flagName string, vs []string) ([]int, error) {
	out := make([]int, 0, len(vs))
	for _, v := range vs {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want positive integers", flagName, v)
		}
		out = append(out, n)
	}
	return out, nil
}

func (c Config) validate() error {
	switch {
	case c.Rows < 100:
		return fmt.Errorf("--rows %d: want 100 or more", c.Rows)
	case c.Consumers < 1 || c.Consumers > 32:
		return fmt.Errorf("--consumers %d: want 1 to 32", c.Consumers)
	case c.Channels < 1 || c.Channels > 64:
		return fmt.Errorf("--channels %d: want 1 to 64", c.Channels)
	case len(c.Windows) == 0:
		return errors.New("--windows: want at least one window")
	case c.ProducerWindow < 0:
		return fmt.Errorf("--producer-window %d: want 0 or more", c.ProducerWindow)
	case c.ProbeRows < 100:
		return fmt.Errorf("--probe-rows %d: want 100 or more", c.ProbeRows)
	case c.Prefetch < 1 || c.Prefetch > 65535:
		return fmt.Errorf("--prefetch %d: want 1 to 65535", c.Prefetch)
	case c.SmallDivisor < 0 || (c.SmallDivisor > 0 && c.Rows/c.SmallDivisor < 100):
		return fmt.Errorf("--small-divisor %d: want 0, or a divisor leaving 100 rows or more", c.SmallDivisor)
	case c.Database == "":
		return errors.New("--database must not be empty")
	case c.PhaseTimeout <= 0:
		return fmt.Errorf("--phase-timeout %s: want a positive duration", c.PhaseTimeout)
	}
	for _, n := range c.CRMBatchSizes {
		if n > crm.DefaultMaxBatch {
			return fmt.Errorf("--crm-batch-sizes %d: want %d customers per request at most", n, crm.DefaultMaxBatch)
		}
	}
	for _, n := range c.Scale {
		if n > 32 {
			return fmt.Errorf("--scale %d: want 32 consumers at most", n)
		}
	}
	return nil
}
