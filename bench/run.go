package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/rabbit"
)

// bench is one run: its services, binaries, files and what it measured.
type bench struct {
	cfg    Config
	logger *slog.Logger
	runID  string
	binDir string
	runDir string
	logDir string

	amqp       *amqp.Connection
	adminURL   string // a database of the server that exists, to create ours
	dbURL      string // the run's own database
	topologies []rabbit.Topology
	sample     []amqp.Publishing
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	root, err := process.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(cfg.DataDir) {
		cfg.DataDir = filepath.Join(root, cfg.DataDir)
	}
	if !filepath.IsAbs(cfg.JSON) {
		cfg.JSON = filepath.Join(root, cfg.JSON)
	}
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	b := &bench{cfg: cfg, logger: logger, runID: hex.EncodeToString(id)}

	if err := b.connect(ctx); err != nil {
		return err
	}
	defer b.cleanup()

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", cfg.DataDir, err)
	}
	if b.runDir, err = os.MkdirTemp("", "custimport-bench-"); err != nil {
		return fmt.Errorf("create a temporary folder: %w", err)
	}
	defer os.RemoveAll(b.runDir)
	b.binDir = filepath.Join(b.runDir, "bin")
	// Logs outlive the run, for a look after a failure; the last run's only.
	b.logDir = filepath.Join(cfg.DataDir, "logs")
	_ = os.RemoveAll(b.logDir)
	if err := os.MkdirAll(b.logDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", b.logDir, err)
	}
	logger.Info("building binaries", "into", b.binDir)
	if err := process.Build(ctx, b.binDir, "./producer", "./consumer", "./mockcrm", "./data/gen"); err != nil {
		return err
	}

	res, err := b.measure(ctx)
	if err != nil {
		return err
	}
	if err := res.writeTable(stdout); err != nil {
		return err
	}
	if err := res.writeJSON(cfg.JSON); err != nil {
		return err
	}
	logger.Info("results written", "json", cfg.JSON, "logs", b.logDir)
	return nil
}

// measure runs every phase and gathers the figures.
func (b *bench) measure(ctx context.Context) (*Results, error) {
	cfg := b.cfg
	big, err := b.generate(ctx, cfg.Rows)
	if err != nil {
		return nil, err
	}
	var small dataFile
	if cfg.SmallDivisor > 0 {
		if small, err = b.generate(ctx, cfg.Rows/cfg.SmallDivisor); err != nil {
			return nil, err
		}
	}
	if b.sample, err = sampleMessages(big.Path, 1000); err != nil {
		return nil, err
	}
	res := &Results{
		RunID: b.runID, Started: time.Now().UTC(), Rows: big.Rows, FileBytes: big.Bytes,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Consumers: cfg.Consumers,
		Channels: cfg.Channels, ProbeMessages: cfg.ProbeRows, MessageBytes: meanBody(b.sample), LoadBefore: loadAvg(),
	}
	began := time.Now()

	c, err := b.ceilings(ctx)
	if err != nil {
		return nil, err
	}
	res.add(Figure{Name: fmt.Sprintf("broker publish-only (quorum, %d ch, window %d)", cfg.Channels, int(c.PublishWindow)), Value: c.Publish, Unit: "msg/s", CPU: c.PublishCPU})
	res.add(Figure{Name: fmt.Sprintf("broker drain-only (%d ch, prefetch %d)", cfg.Consumers, cfg.Prefetch), Value: c.Drain, Unit: "msg/s", CPU: c.DrainCPU})
	res.add(Figure{Name: "broker pass-through (publish + drain)", Value: c.PassThrough, Unit: "msg/s", CPU: c.PassCPU})

	alone, err := b.pipeline(ctx, spec{name: fmt.Sprintf("seq%d", cfg.Consumers), file: big, consumers: cfg.Consumers})
	if err != nil {
		return nil, err
	}
	res.add(Figure{
		Name: "producer alone", Value: alone.produceRate, Unit: "rows/s", Ratio: alone.produceRate / c.Publish, Of: "publish-only", Target: 0.90,
		ProducerRSS: mib(alone.producerUsage.PeakRSS), CPU: alone.produceCPU,
	})
	res.add(Figure{
		Name: fmt.Sprintf("consumers alone (%d, queue of %d)", cfg.Consumers, alone.producer.Published), Value: alone.rate, Unit: "rows/s",
		Ratio: alone.rate / c.Drain, Of: "drain-only", Target: 0.70, ConsumerRSS: mib(slices.Max(alone.consumerPeaks)), CPU: alone.consumeCPU,
	})

	e2e, err := b.pipeline(ctx, spec{name: "e2e", file: big, consumers: cfg.Consumers, together: true})
	if err != nil {
		return nil, err
	}
	res.add(Figure{
		Name: fmt.Sprintf("end to end (%d consumers)", cfg.Consumers), Value: e2e.rate, Unit: "rows/s", Ratio: e2e.rate / c.PassThrough, Of: "pass-through", Target: 0.80,
		ProducerRSS: mib(e2e.producerUsage.PeakRSS), ConsumerRSS: mib(slices.Max(e2e.consumerPeaks)), CPU: e2e.consumeCPU,
	})

	faults, err := b.pipeline(ctx, spec{
		name: "faults", file: big, consumers: cfg.Consumers, together: true,
		crmFlags: []string{"--fail-rate", "0.15", "--latency", "5ms"},
		env:      []string{"CONSUMER_MAX_ATTEMPTS=20"},
	})
	if err != nil {
		return nil, err
	}
	res.add(Figure{
		Name: "end to end, CRM 15% failures + 5ms", Value: faults.rate, Unit: "rows/s", Ratio: faults.rate / e2e.rate, Of: "end to end", Target: 0.50,
		ProducerRSS: mib(faults.producerUsage.PeakRSS), ConsumerRSS: mib(slices.Max(faults.consumerPeaks)), CPU: faults.consumeCPU,
	})

	for _, n := range cfg.Scale {
		o := alone
		if n != cfg.Consumers {
			if o, err = b.pipeline(ctx, spec{name: fmt.Sprintf("seq%d", n), file: big, consumers: n}); err != nil {
				return nil, err
			}
		}
		res.add(Figure{
			Name: fmt.Sprintf("scaling: %d consumer(s) alone", n), Value: o.rate, Unit: "rows/s", Ratio: o.rate / c.Drain, Of: "drain-only",
			ConsumerRSS: mib(slices.Max(o.consumerPeaks)), CPU: o.consumeCPU,
		})
	}

	if cfg.SmallDivisor > 0 {
		sm, err := b.pipeline(ctx, spec{name: "small", file: small, consumers: cfg.Consumers})
		if err != nil {
			return nil, err
		}
		res.add(Figure{
			Name: fmt.Sprintf("producer alone, %d rows (%.0f MiB file)", small.Rows, mib(small.Bytes)), Value: sm.produceRate, Unit: "rows/s",
			Ratio: sm.produceRate / c.Publish, Of: "publish-only", ProducerRSS: mib(sm.producerUsage.PeakRSS), CPU: sm.produceCPU,
		})
		res.add(Figure{
			Name:  fmt.Sprintf("producer peak RSS, %d rows (%.0f MiB file)", big.Rows, mib(big.Bytes)),
			Value: mib(alone.producerUsage.PeakRSS), Unit: "MiB", Ratio: float64(alone.producerUsage.PeakRSS) / float64(sm.producerUsage.PeakRSS),
			Of: fmt.Sprintf("%d-row file", small.Rows), Target: 64, TargetIsMax: true,
		})
		res.add(Figure{
			Name:  fmt.Sprintf("consumer peak RSS, queue of %d", alone.producer.Published),
			Value: mib(slices.Max(alone.consumerPeaks)), Unit: "MiB", Ratio: float64(slices.Max(alone.consumerPeaks)) / float64(slices.Max(sm.consumerPeaks)),
			Of: fmt.Sprintf("queue of %d", sm.producer.Published),
		})
	}
	res.Elapsed = time.Since(began).Seconds()
	res.LoadAfter = loadAvg()
	return res, nil
}

func meanBody(msgs []amqp.Publishing) int {
	total := 0
	for _, m := range msgs {
		total += len(m.Body)
	}
	return total / max(len(msgs), 1)
}

// connect checks both services answer, and creates the run's database.
func (b *bench) connect(ctx context.Context) error {
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := rabbit.Dial(dialCtx, b.cfg.AMQPURL, "bench")
	if err != nil {
		return fmt.Errorf("%w: RabbitMQ (start it with `make infra`, or set AMQP_URL): %w", errNoService, err)
	}
	b.amqp = conn

	b.adminURL = b.cfg.DatabaseURL
	admin, err := pgx.Connect(dialCtx, b.adminURL)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "3D000" { // invalid_catalog_name
		// The URL's database need not exist: any will do to create ours.
		b.adminURL = withDatabase(b.cfg.DatabaseURL, "postgres")
		admin, err = pgx.Connect(dialCtx, b.adminURL)
	}
	if err != nil {
		return fmt.Errorf("%w: PostgreSQL at %s (start it with `make infra`, or set DATABASE_URL): %w", errNoService, pgstore.Redact(b.cfg.DatabaseURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, b.cfg.Database).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", b.cfg.Database, err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{b.cfg.Database}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", b.cfg.Database, err)
		}
	}
	b.dbURL = withDatabase(b.cfg.DatabaseURL, b.cfg.Database)
	b.logger.Info("services answer", "amqp", rabbit.Redact(b.cfg.AMQPURL), "database", pgstore.Redact(b.dbURL), "run", b.runID)
	return nil
}

// cleanup deletes what the run left (after a failure, its queues) and drops
// the database.
func (b *bench) cleanup() {
	for _, top := range slices.Clone(b.topologies) {
		b.deleteTopology(top)
	}
	_ = b.amqp.Close()
	if b.cfg.Keep {
		b.logger.Info("kept the database and queues", "database", b.cfg.Database, "prefix", "bench-"+b.runID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, b.adminURL)
	if err == nil {
		_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.cfg.Database}.Sanitize()+" WITH (FORCE)")
		_ = admin.Close(ctx)
	}
	if err != nil {
		b.logger.Warn("drop database", "database", b.cfg.Database, "err", err)
	}
}

func (b *bench) bin(name string) string { return filepath.Join(b.binDir, name) }

func (b *bench) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.bin(name), args...) //nolint:gosec // our own binaries
	cmd.Stderr = os.Stderr
	return cmd
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

func withSearchPath(raw, schema string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
