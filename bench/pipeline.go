package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/rabbit"
)

// retryDelays are short so that the faulty-CRM run ends with every customer
// synced within the bench; every run declares the same topology.
var retryDelays = []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second}

// dataFile is a generated CSV and what importing it must end with.
type dataFile struct {
	Path         string `json:"-"`
	Rows         int64  `json:"rows"`
	Invalid      int64  `json:"invalid"`
	Duplicates   int64  `json:"duplicates"`
	UniqueEmails int64  `json:"unique_emails"`
	Bytes        int64  `json:"bytes"`
}

// generate writes (or reuses) the CSV of rows rows; the generator is
// deterministic, so a cached file with its summary is the same file.
func (b *bench) generate(ctx context.Context, rows int) (dataFile, error) {
	path, err := filepath.Abs(filepath.Join(b.cfg.DataDir, fmt.Sprintf("customers_%d.csv", rows)))
	if err != nil {
		return dataFile{}, err
	}
	sumPath := path + ".summary.json"
	var f dataFile
	if sb, err := os.ReadFile(sumPath); err == nil && json.Unmarshal(sb, &f) == nil { //nolint:gosec // our own cache
		if st, err := os.Stat(path); err == nil && st.Size() == f.Bytes {
			f.Path = path
			b.logger.Info("reusing generated CSV", "file", path, "rows", rows)
			return f, nil
		}
	}
	b.logger.Info("generating CSV", "file", path, "rows", rows)
	var out bytes.Buffer
	cmd := b.command(ctx, "gen", "--rows", strconv.Itoa(rows), "--dups", "0.02", "--invalid", "0.01", "--seed", "1", "--out", path)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return dataFile{}, fmt.Errorf("generate %s: %w", path, err)
	}
	if err := json.Unmarshal(out.Bytes(), &f); err != nil {
		return dataFile{}, fmt.Errorf("read the generator's summary %q: %w", out.String(), err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return dataFile{}, err
	}
	f.Path, f.Bytes = path, st.Size()
	sb, _ := json.Marshal(f)
	if err := os.WriteFile(sumPath, sb, 0o600); err != nil {
		return dataFile{}, fmt.Errorf("write %s: %w", sumPath, err)
	}
	return f, nil
}

// declare declares a topology of the run's own, named after what, exactly as
// the binaries do: on the cluster, with one replica per node.
func (b *bench) declare(ctx context.Context, what string, onCluster bool) (rabbit.Topology, error) {
	top := rabbit.Topology{Prefix: "bench-" + b.runID + "-" + what, RetryDelays: retryDelays}.WithDefaults()
	if onCluster {
		top.Replicas = rabbit.Replicas(b.cfg.ClusterURL)
	}
	ch, err := b.conn(top).Channel()
	if err != nil {
		return top, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := top.Declare(ch); err != nil {
		return top, err
	}
	b.topologies = append(b.topologies, top)
	return top, nil
}

// deleteTopology removes the topology's queues; failures are logged, not
// returned, since they do not spoil the figures.
func (b *bench) deleteTopology(top rabbit.Topology) {
	if b.cfg.Keep {
		return
	}
	ch, err := b.conn(top).Channel()
	if err == nil {
		err = top.Delete(ch)
		_ = ch.Close()
	}
	if err != nil {
		b.logger.Warn("delete queues", "prefix", top.Prefix, "err", err)
		return
	}
	for i, t := range b.topologies {
		if t.Prefix == top.Prefix {
			b.topologies = append(b.topologies[:i], b.topologies[i+1:]...)
			break
		}
	}
}

// conn is the connection to the broker holding top: a topology with
// replicas lives on the cluster.
func (b *bench) conn(top rabbit.Topology) *amqp.Connection {
	if top.Replicas > 0 && b.cluster != nil {
		return b.cluster
	}
	return b.amqp
}

// queue reads the work queue's ready messages and consumers.
func (b *bench) queue(top rabbit.Topology) (rabbit.Depth, error) {
	name := top.Queue()
	depths, err := rabbit.AMQPDepths(b.conn(top), []string{name})
	if err != nil {
		return rabbit.Depth{}, err
	}
	if depths[0].Missing {
		return rabbit.Depth{}, fmt.Errorf("queue %s is gone", name)
	}
	return depths[0], nil
}

// spec is one measured pipeline run.
type spec struct {
	name      string
	file      dataFile
	consumers int
	together  bool     // consumers run while the producer publishes
	cluster   bool     // on the cluster's nodes rather than the one broker
	crmFlags  []string // beyond no failures and no latency
	env       []string // beyond the common environment
}

// outcome is what a pipeline run measured.
type outcome struct {
	producer      summary
	producerUsage process.Usage
	// produceRate is rows per second of the producer's own summary.
	produceRate float64
	produceCPU  CPU
	// rate is, when together, rows from the producer's start to the last
	// customer synced; otherwise messages from the consumers' start to the
	// last customer synced.
	rate          float64
	elapsed       time.Duration
	consumeCPU    CPU
	consumerPeaks []int64
}

// summary is the producer's stdout.
type summary struct {
	Rows       int64   `json:"rows"`
	Published  int64   `json:"published"`
	Rejected   int64   `json:"rejected"`
	Elapsed    float64 `json:"elapsed_seconds"`
	RowsPerSec float64 `json:"rows_per_second"`
	Complete   bool    `json:"complete"`
	Error      string  `json:"error"`
}

// pipeline runs the producer and consumers on a schema, queues and mockcrm of
// their own, and removes them afterwards.
func (b *bench) pipeline(ctx context.Context, s spec) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PhaseTimeout)
	defer cancel()
	var o outcome
	b.logger.Info("pipeline run", "run", s.name, "rows", s.file.Rows, "consumers", s.consumers, "together", s.together)

	schema := "bench_" + b.runID + "_" + strings.ReplaceAll(s.name, "-", "_")
	if _, err := pgstore.Migrate(ctx, pgstore.Config{URL: b.dbURL, Schema: schema, MaxConns: 2}); err != nil {
		return o, err
	}
	defer b.dropSchema(schema)
	top, err := b.declare(ctx, s.name, s.cluster)
	if err != nil {
		return o, err
	}
	defer b.deleteTopology(top)
	amqpURL := b.cfg.AMQPURL
	if s.cluster {
		amqpURL = b.cfg.ClusterURL
	}

	addr, err := process.FreeAddr(ctx)
	if err != nil {
		return o, err
	}
	crmArgs := append([]string{"--addr", addr, "--fail-rate", "0", "--latency", "0", "--seed", "1", "--log-format", "json"}, s.crmFlags...)
	crm, err := b.start(s.name+"-mockcrm", "mockcrm", nil, crmArgs...)
	if err != nil {
		return o, err
	}
	defer func() { _ = crm.Stop() }()
	if err := process.WaitHTTP(ctx, crm, "http://"+addr+"/healthz", 20*time.Second); err != nil {
		return o, fmt.Errorf("mockcrm: %w (log: %s)", err, crm.Log())
	}

	env := slices.Concat(top.Env(), []string{
		"AMQP_URL=" + amqpURL,
		"DATABASE_URL=" + withSearchPath(b.dbURL, schema),
		"CRM_URL=http://" + addr,
		"LOG_FORMAT=json",
	}, s.env)

	var consumers []*process.Process
	stopConsumers := func() {
		for _, c := range consumers {
			_ = c.Stop()
		}
	}
	defer stopConsumers()
	startConsumers := func() error {
		for i := range s.consumers {
			name := fmt.Sprintf("%s-consumer-%d", s.name, i+1)
			// Each consumer serves /metrics on a port of its own.
			httpAddr, err := process.FreeAddr(ctx)
			if err != nil {
				return err
			}
			c, err := b.start(name, "consumer", append(env, "CONSUMER_NAME="+name, "CONSUMER_HTTP_ADDR="+httpAddr))
			if err != nil {
				return err
			}
			consumers = append(consumers, c)
		}
		return nil
	}

	var began time.Time
	var before cpuSnapshot
	if s.together {
		if err := startConsumers(); err != nil {
			return o, err
		}
		if err := b.waitConsumers(ctx, top, s.consumers, consumers); err != nil {
			return o, err
		}
		before, began = takeCPU(), time.Now()
	}
	pBefore := takeCPU()
	if err := b.produce(ctx, s, env, &o); err != nil {
		return o, err
	}
	o.produceCPU = between(pBefore, takeCPU())
	o.produceCPU.Client = o.producerUsage.CPU
	if !s.together {
		before, began = takeCPU(), time.Now()
		if err := startConsumers(); err != nil {
			return o, err
		}
	}
	var perf *profiler
	if b.cfg.Perf && s.name == "e2e" {
		perf = b.startPerf(s.name, append(slices.Clone(consumers), crm))
	}
	end, err := b.waitSynced(ctx, schema, top, s.file.UniqueEmails, consumers)
	after := takeCPU()
	perf.finish(ctx)
	if err != nil {
		return o, err
	}
	stopConsumers()
	_ = crm.Stop()

	o.elapsed = end.Sub(began)
	n := o.producer.Published
	if s.together {
		n = o.producer.Rows
	}
	o.rate = float64(n) / o.elapsed.Seconds()
	o.consumeCPU = between(before, after)
	o.consumeCPU.CRM = crm.Usage().CPU
	for _, c := range consumers {
		u := c.Usage()
		o.consumeCPU.Consumers += u.CPU
		o.consumerPeaks = append(o.consumerPeaks, u.PeakRSS)
	}
	if s.together {
		o.consumeCPU.Client = o.producerUsage.CPU
	}
	b.logger.Info("pipeline run done", "run", s.name, "rows_per_s", int(o.rate), "elapsed", o.elapsed.Round(time.Millisecond),
		"producer_rows_per_s", int(o.produceRate), "producer_peak_rss_mib", mib(o.producerUsage.PeakRSS))
	return o, nil
}

func (b *bench) produce(ctx context.Context, s spec, env []string, o *outcome) error {
	state, err := os.MkdirTemp(b.runDir, s.name+"-producer-")
	if err != nil {
		return err
	}
	args := []string{"--file", s.file.Path, "--parallel", strconv.Itoa(b.cfg.Channels), "--state-dir", state}
	if b.cfg.ProducerWindow > 0 {
		args = append(args, "--window", strconv.Itoa(b.cfg.ProducerWindow))
	}
	p, err := b.start(s.name+"-producer", "producer", env, args...)
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		return err
	}
	if err := json.Unmarshal(p.Stdout(), &o.producer); err != nil {
		return fmt.Errorf("read the producer's summary %q: %w", p.Stdout(), err)
	}
	if !o.producer.Complete || o.producer.Error != "" {
		return fmt.Errorf("producer did not complete: %s (log: %s)", o.producer.Error, p.Log())
	}
	if want := s.file.Rows - s.file.Invalid; o.producer.Published != want {
		return fmt.Errorf("producer published %d messages, want %d", o.producer.Published, want)
	}
	o.producerUsage = p.Usage()
	o.produceRate = o.producer.RowsPerSec
	return nil
}

// waitConsumers waits until n consumers are registered on the queue, so that
// a run measured from the producer's start does not include their start-up.
func (b *bench) waitConsumers(ctx context.Context, top rabbit.Topology, n int, procs []*process.Process) error {
	for {
		q, err := b.queue(top)
		if err != nil {
			return err
		}
		if q.Consumers >= int64(n) {
			return nil
		}
		if err := exited(procs); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d consumers on %s: %w", n, top.Queue(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exited reports a process that stopped on its own.
func exited(procs []*process.Process) error {
	for _, p := range procs {
		if p.Exited() {
			return fmt.Errorf("%s exited early: %w (log: %s)\n%s", p.Name(), p.Err(), p.Log(), process.Tail(p.Log(), 2000))
		}
	}
	return nil
}

// start runs one of the built binaries with its log in the log folder and
// stdout kept (the producer's summary). It is not tied to a context: it is
// stopped with Stop, gracefully, so that its resource usage is whole.
func (b *bench) start(name, bin string, env []string, args ...string) (*process.Process, error) {
	return process.Start(context.Background(), process.Spec{
		Name: name, Bin: b.bin(bin), Args: args, Env: env,
		Log: filepath.Join(b.logDir, name+".log"), CaptureStdout: true, StopGrace: time.Minute,
	})
}

// waitSynced polls until want customers are synced and the work queue is
// empty, and returns when that was first seen. The database is only asked
// once the queue is empty, so polling does not compete with the consumers.
func (b *bench) waitSynced(ctx context.Context, schema string, top rabbit.Topology, want int64, procs []*process.Process) (time.Time, error) {
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return time.Time{}, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := `SELECT count(*) FILTER (WHERE crm_state = 'synced'), count(*) FILTER (WHERE crm_state IN ('failed', 'rejected')), count(*) FROM ` +
		pgx.Identifier{schema, "customers"}.Sanitize()
	lastLog := time.Now()
	for {
		work, err := b.queue(top)
		if err != nil {
			return time.Time{}, err
		}
		depth := work.Messages
		if depth == 0 {
			now := time.Now()
			var synced, given, total int64
			if err := conn.QueryRow(ctx, q).Scan(&synced, &given, &total); err != nil {
				return time.Time{}, fmt.Errorf("count customers: %w", err)
			}
			if given > 0 {
				return time.Time{}, fmt.Errorf("%d customers failed or were rejected: the CRM step did not converge", given)
			}
			if synced >= want {
				return now, nil
			}
		}
		if err := exited(procs); err != nil {
			return time.Time{}, err
		}
		if time.Since(lastLog) > 10*time.Second {
			b.logger.Info("waiting for the consumers", "queue_depth", depth)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for %d customers synced: %w", want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *bench) dropSchema(schema string) {
	if b.cfg.Keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err == nil {
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		_ = conn.Close(ctx)
	}
	if err != nil {
		b.logger.Warn("drop schema", "schema", schema, "err", err)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

var errNoService = errors.New("service unreachable")
