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
	"strconv"
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
	cluster    *amqp.Connection // nil when the cluster is not measured
	clusterMsg string           // why not, one line for the table
	adminURL   string           // a database of the server that exists, to create ours
	dbURL      string           // the run's own database
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
	b.connectCluster(ctx)

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
		Cluster: b.clusterMsg,
	}
	began := time.Now()

	c, err := b.ceilings(ctx)
	if err != nil {
		return nil, err
	}
	probed := int64(cfg.ProbeRows)
	res.add(Figure{Name: fmt.Sprintf("broker publish-only (quorum, %d ch, window %d)", cfg.Channels, int(c.PublishWindow)), Value: c.Publish, Unit: "msg/s", CPU: c.PublishCPU, Rows: probed})
	res.add(Figure{Name: fmt.Sprintf("broker drain-only (%d ch, prefetch %d)", cfg.Consumers, cfg.Prefetch), Value: c.Drain, Unit: "msg/s", CPU: c.DrainCPU, Rows: probed})
	res.add(Figure{Name: "broker pass-through (publish + drain)", Value: c.PassThrough, Unit: "msg/s", CPU: c.PassCPU, Rows: probed})

	alone, err := b.pipeline(ctx, spec{name: fmt.Sprintf("seq%d", cfg.Consumers), file: big, consumers: cfg.Consumers})
	if err != nil {
		return nil, err
	}
	producerAlone := alone.producerFigure("producer alone", c.Publish, "publish-only", 0.90)
	consumersAlone := alone.consumersFigure(fmt.Sprintf("consumers alone (%d, queue of %d)", cfg.Consumers, alone.producer.Published), c.Drain, "drain-only", 0.70)
	res.add(producerAlone)
	res.add(consumersAlone)

	e2e, err := b.pipeline(ctx, spec{name: "e2e", file: big, consumers: cfg.Consumers, together: true})
	if err != nil {
		return nil, err
	}
	endToEnd := e2e.endToEndFigure(fmt.Sprintf("end to end (%d consumers)", cfg.Consumers), c.PassThrough, "pass-through", 0.80)
	res.add(endToEnd)

	faults, err := b.pipeline(ctx, spec{
		name: "faults", file: big, consumers: cfg.Consumers, together: true,
		crmFlags: []string{"--fail-rate", "0.15", "--latency", "5ms"},
		env:      []string{"CONSUMER_MAX_ATTEMPTS=20"},
	})
	if err != nil {
		return nil, err
	}
	res.add(faults.endToEndFigure("end to end, CRM 15% failures + 5ms", e2e.rate, "end to end", 0.50))

	// One CRM request per customer against batches: the target for
	// batches is 0.6 of pass-through.
	for _, n := range cfg.CRMBatchSizes {
		o, err := b.pipeline(ctx, spec{
			name: fmt.Sprintf("e2e-batch%d", n), file: big, consumers: cfg.Consumers, together: true,
			env: []string{"CRM_BATCH_SIZE=" + strconv.Itoa(n)},
		})
		if err != nil {
			return nil, err
		}
		target := 0.60
		if n == 1 {
			target = 0
		}
		res.add(o.endToEndFigure(fmt.Sprintf("end to end, CRM batch %d", n), c.PassThrough, "pass-through", target))
	}

	if b.cluster != nil {
		if err := b.measureCluster(ctx, res, big, producerAlone, consumersAlone, endToEnd); err != nil {
			return nil, err
		}
	}

	for _, n := range cfg.Scale {
		o := alone
		if n != cfg.Consumers {
			if o, err = b.pipeline(ctx, spec{name: fmt.Sprintf("seq%d", n), file: big, consumers: n}); err != nil {
				return nil, err
			}
		}
		res.add(o.consumersFigure(fmt.Sprintf("scaling: %d consumer(s) alone", n), c.Drain, "drain-only", 0))
	}

	if cfg.SmallDivisor > 0 {
		sm, err := b.pipeline(ctx, spec{name: "small", file: small, consumers: cfg.Consumers})
		if err != nil {
			return nil, err
		}
		res.add(sm.producerFigure(fmt.Sprintf("producer alone, %d rows (%.0f MiB file)", small.Rows, mib(small.Bytes)), c.Publish, "publish-only", 0))
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

// measureCluster runs the producer and consumers alone, and end to end, on
// the cluster: each figure next to the same one on one node, measured in
// this run.
func (b *bench) measureCluster(ctx context.Context, res *Results, file dataFile, producerAlone, consumersAlone, endToEnd Figure) error {
	cfg := b.cfg
	nodes := rabbit.Replicas(cfg.ClusterURL)
	seq, err := b.pipeline(ctx, spec{name: "cluster-seq", file: file, consumers: cfg.Consumers, cluster: true})
	if err != nil {
		return fmt.Errorf("on the cluster: %w", err)
	}
	e2e, err := b.pipeline(ctx, spec{name: "cluster-e2e", file: file, consumers: cfg.Consumers, together: true, cluster: true})
	if err != nil {
		return fmt.Errorf("on the cluster: %w", err)
	}
	prefix := fmt.Sprintf("cluster of %d: ", nodes)
	for _, p := range []struct{ cluster, node Figure }{
		{seq.producerFigure(prefix+producerAlone.Name, producerAlone.Value, "one node", 0), producerAlone},
		{seq.consumersFigure(prefix+consumersAlone.Name, consumersAlone.Value, "one node", 0), consumersAlone},
		{e2e.endToEndFigure(prefix+endToEnd.Name, endToEnd.Value, "one node", 0), endToEnd},
	} {
		p.cluster.OneNode = p.node.Value
		res.add(p.cluster)
	}
	return nil
}

// producerFigure is the producer's own rate, against base.
func (o outcome) producerFigure(name string, base float64, of string, target float64) Figure {
	return Figure{
		Name: name, Value: o.produceRate, Unit: "rows/s", Ratio: o.produceRate / base, Of: of, Target: target,
		ProducerRSS: mib(o.producerUsage.PeakRSS), CPU: o.produceCPU, Rows: o.producer.Rows,
	}
}

// consumersFigure is the consumers' rate draining a full queue, against base.
func (o outcome) consumersFigure(name string, base float64, of string, target float64) Figure {
	return Figure{
		Name: name, Value: o.rate, Unit: "rows/s", Ratio: o.rate / base, Of: of, Target: target,
		ConsumerRSS: mib(slices.Max(o.consumerPeaks)), CPU: o.consumeCPU, Rows: o.producer.Published,
	}
}

// endToEndFigure is the rate from the producer's start to the last customer
// synced, against base.
func (o outcome) endToEndFigure(name string, base float64, of string, target float64) Figure {
	return Figure{
		Name: name, Value: o.rate, Unit: "rows/s", Ratio: o.rate / base, Of: of, Target: target,
		ProducerRSS: mib(o.producerUsage.PeakRSS), ConsumerRSS: mib(slices.Max(o.consumerPeaks)), CPU: o.consumeCPU, Rows: o.producer.Rows,
	}
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

// connectCluster opens a connection to the cluster when every node of
// --cluster-amqp-url answers; otherwise the cluster rows are skipped and
// clusterMsg says why.
func (b *bench) connectCluster(ctx context.Context) {
	if b.cfg.ClusterURL == "" {
		b.clusterMsg = "cluster: not measured (--cluster-amqp-url is empty)"
		return
	}
	urls, _ := rabbit.ParseURLs(b.cfg.ClusterURL) // validated with the configuration
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, u := range urls {
		conn, err := rabbit.Dial(dialCtx, u, "bench-cluster-check")
		if err != nil {
			b.clusterMsg = fmt.Sprintf("cluster: not running, no node answers at %s (start it with make cluster, or set --cluster-amqp-url): cluster rows skipped", rabbit.Redact(u))
			b.logger.Info("cluster rows skipped", "url", rabbit.Redact(u), "err", err)
			return
		}
		_ = conn.Close()
	}
	conn, err := rabbit.Dial(dialCtx, b.cfg.ClusterURL, "bench-cluster")
	if err != nil {
		b.clusterMsg = fmt.Sprintf("cluster: not running (%v): cluster rows skipped", err)
		return
	}
	b.cluster = conn
	b.logger.Info("cluster answers", "nodes", len(urls))
}

// cleanup deletes what the run left (after a failure, its queues) and drops
// the database.
func (b *bench) cleanup() {
	for _, top := range slices.Clone(b.topologies) {
		b.deleteTopology(top)
	}
	_ = b.amqp.Close()
	if b.cluster != nil {
		_ = b.cluster.Close()
	}
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
