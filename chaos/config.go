package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/rabbit"
)

const usage = `chaos runs the whole pipeline under injected faults and checks exactly-once.

Usage: chaos [--rows 50000] [--consumers 3] [--seed N] [--duration 10m] [--keep] [--short]

It builds producer, consumer, mockcrm and data/gen, makes its own Postgres
schema and queue prefix, routes RabbitMQ and Postgres traffic through
in-process TCP proxies, and while the import runs kills consumers (SIGKILL),
kills the producer once mid-file (then --resume), cuts the proxied
connections, stops Postgres for a while, and makes the CRM fail (outage, 429s).
The table goes to stdout; the exit status is 1 when a check fails, 2 when the run could not be made.`

// Config is everything the harness is told. Field comments give defaults.
type Config struct {
	// Rows is the size of the generated file. Default 50000 (5000 with Short).
	Rows int
	// Consumers is how many consumer processes run. Default 3 (2 with Short).
	Consumers int
	// Seed drives the data, the fault schedule and mockcrm's failures.
	// Default 0: taken from the clock and logged, so a run can be replayed.
	Seed int
	// Faults is how many faults are injected, besides the producer kill.
	// Default 0: 16, or 5 with Short.
	Faults int
	// Duration bounds the whole run after the build. Default 10m (2m with Short).
	Duration time.Duration
	// Keep leaves the schema, the queues and the work folder in place.
	Keep bool
	// Short is the quick form for tests: fewer rows and faults.
	Short bool
	// AMQPURL is the broker. Default amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string
	// DatabaseURL is the Postgres database the schema is made in; it is
	// created when missing. Default postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
	DatabaseURL string
	// ClusterNodes, when set, are the Erlang names of the RabbitMQ nodes
	// behind AMQPURL (a comma-separated list, in the same order): the
	// cluster mode, which also stops the node leading the import queue
	// (rabbitmqctl stop_app), waits and starts it, twice.
	ClusterNodes []string
	// WorkDir holds the binaries, the data and the logs. Default: a new
	// temporary folder, removed after a passing run unless Keep.
	WorkDir string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	s := envflag.New("chaos", usage, getenv, stderr)
	s.Int(&c.Rows, "rows", "CHAOS_ROWS", 50000, "rows in the generated file (5000 with --short)")
	s.Int(&c.Consumers, "consumers", "CHAOS_CONSUMERS", 3, "consumer processes (2 with --short)")
	s.Int(&c.Seed, "seed", "CHAOS_SEED", 0, "random seed for data, faults and the CRM (0: from the clock)")
	s.Int(&c.Faults, "faults", "CHAOS_FAULTS", 0, "faults to inject besides the producer kill (0: 16, or 5 with --short)")
	s.Duration(&c.Duration, "duration", "CHAOS_DURATION", 0, "bound on the run after the build (0: 10m, or 2m with --short)")
	s.Bool(&c.Keep, "keep", "CHAOS_KEEP", false, "keep the schema, the queues and the work folder for inspection")
	s.Bool(&c.Short, "short", "CHAOS_SHORT", false, "quick form: about 5,000 rows, fewer faults, under a minute")
	s.String(&c.AMQPURL, "amqp-url", "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `URL`")
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL `URL` (the database is created when missing)")
	s.List(&c.ClusterNodes, "cluster-nodes", "CHAOS_CLUSTER_NODES", nil, "Erlang `names` of the cluster nodes behind --amqp-url, in its order: stop and start them mid-import (make chaos-cluster)")
	s.String(&c.WorkDir, "work-dir", "CHAOS_WORK_DIR", "", "`folder` for binaries, data and logs (default: a new temporary folder)")
	if err := s.Parse(args); err != nil {
		return Config{}, err
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", rest[0])
	}
	set := map[string]bool{}
	s.FlagSet().Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Short {
		if !set["rows"] {
			c.Rows = 5000
		}
		if !set["consumers"] {
			c.Consumers = 2
		}
	}
	if c.Faults == 0 {
		c.Faults = 16
		if c.Short {
			c.Faults = 5
		}
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Minute
		if c.Short {
			c.Duration = 2 * time.Minute
		}
	}
	if c.Seed == 0 {
		c.Seed = int(time.Now().UnixNano() % 1_000_000)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Rows < 100:
		return fmt.Errorf("--rows %d: want 100 or more, or the producer is done before it can be killed", c.Rows)
	case c.Consumers < 1 || c.Consumers > 32:
		return fmt.Errorf("--consumers %d: want 1 to 32", c.Consumers)
	case c.Faults < 0:
		return fmt.Errorf("--faults %d: want 0 or more", c.Faults)
	case c.Duration < 0:
		return fmt.Errorf("--duration %s: want a positive duration", c.Duration)
	case c.Seed < 0:
		return fmt.Errorf("--seed %d: want 0 or more", c.Seed)
	}
	urls, err := rabbit.ParseURLs(c.AMQPURL)
	if err != nil {
		return fmt.Errorf("--amqp-url: %w", err)
	}
	if len(c.ClusterNodes) > 0 && (len(c.ClusterNodes) < 2 || len(c.ClusterNodes) != len(urls)) {
		return fmt.Errorf("--cluster-nodes: %d node names for %d AMQP URLs: want one per URL, two or more", len(c.ClusterNodes), len(urls))
	}
	return nil
}
