package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/tcpproxy"
)

// The settings the consumers run with: retry steps short enough that a
// run ends in minutes, and attempts enough that a 10% failure rate plus an
// outage never exhausts them (0.1^25).
var retryDelays = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

const (
	maxAttempts  = "25"
	leaseFor     = "15s"
	crmTimeout   = "3s"
	rejectDomain = "crm-refuses.example"
)

// harness is one isolated deployment: its own schema, queue prefix, CRM and
// proxies, and the processes running against them.
type harness struct {
	cfg    Config
	logger *slog.Logger
	work   string // binaries, data, logs
	bin    string
	logDir string

	schema string
	dbURL  string // direct, with the schema as search_path
	top    rabbit.Topology
	crmURL string

	rabbitProxies []*tcpproxy.Proxy // one per AMQP URL
	cluster       *cluster          // nil but in the cluster mode
	pgProxy       *tcpproxy.Proxy
	pool          *pgxpool.Pool
	amqpMu        sync.Mutex
	amqpConn      *amqp.Connection // the harness's own; see broker
	crm           *process.Process
	crmCancel     context.CancelFunc

	env []string // for producer and consumers: through the proxies
}

// build compiles the binaries into the work folder.
func (h *harness) build(ctx context.Context) error {
	h.bin = filepath.Join(h.work, "bin")
	h.logDir = filepath.Join(h.work, "logs")
	for _, d := range []string{h.bin, h.logDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("make %s: %w", d, err)
		}
	}
	h.logger.Info("building", "into", h.bin)
	return process.Build(ctx, h.bin, "./producer", "./consumer", "./mockcrm", "./data/gen")
}

// setup makes the schema, the topology, the proxies and mockcrm.
func (h *harness) setup(ctx context.Context) error {
	id := fmt.Sprintf("chaos_%d_%d", h.cfg.Seed, time.Now().Unix()%100000)
	h.schema = id
	h.top = rabbit.Topology{Prefix: id, RetryDelays: retryDelays, Replicas: rabbit.Replicas(h.cfg.AMQPURL)}.WithDefaults()
	if len(h.cfg.ClusterNodes) > 0 {
		h.cluster = &cluster{nodes: h.cfg.ClusterNodes, logger: h.logger, down: 3 * time.Second}
	}

	if err := ensureDatabase(ctx, h.cfg.DatabaseURL, h.logger); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, h.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", pgstore.Redact(h.cfg.DatabaseURL), err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{h.schema}.Sanitize())
	_ = conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("create schema %s: %w", h.schema, err)
	}
	h.dbURL, err = withSearchPath(h.cfg.DatabaseURL, h.schema, "")
	if err != nil {
		return err
	}
	mig := exec.CommandContext(ctx, filepath.Join(h.bin, "consumer"), "migrate") //nolint:gosec // G204: the binary just built
	mig.Env = append(os.Environ(), "DATABASE_URL="+h.dbURL, "LOG_FORMAT=json")
	if out, err := mig.CombinedOutput(); err != nil {
		return fmt.Errorf("consumer migrate: %w\n%s", err, out)
	}
	h.pool, err = pgxpool.New(ctx, h.dbURL)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}

	amqpConn, err := h.broker(ctx)
	if err != nil {
		return err
	}
	ch, err := amqpConn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := h.top.Declare(ch); err != nil {
		return err
	}

	pgTarget, err := hostPort(h.cfg.DatabaseURL, "5432")
	if err != nil {
		return err
	}
	if h.pgProxy, err = tcpproxy.Start(ctx, pgTarget); err != nil {
		return fmt.Errorf("start Postgres proxy: %w", err)
	}
	// One proxy per broker URL (per node of a cluster).
	urls, err := rabbit.ParseURLs(h.cfg.AMQPURL)
	if err != nil {
		return err
	}
	var viaProxy, proxyAddrs []string
	for _, u := range urls {
		target, err := hostPort(u, "5672")
		if err != nil {
			return err
		}
		p, err := tcpproxy.Start(ctx, target)
		if err != nil {
			return fmt.Errorf("start RabbitMQ proxy: %w", err)
		}
		h.rabbitProxies = append(h.rabbitProxies, p)
		via, err := withHost(u, p.Addr())
		if err != nil {
			return err
		}
		viaProxy, proxyAddrs = append(viaProxy, via), append(proxyAddrs, p.Addr())
	}
	amqpViaProxy := strings.Join(viaProxy, ",")
	dbViaProxy, err := withSearchPath(h.cfg.DatabaseURL, h.schema, h.pgProxy.Addr())
	if err != nil {
		return err
	}

	if err := h.startCRM(ctx); err != nil {
		return err
	}
	h.env = append(h.top.Env(),
		"AMQP_URL="+amqpViaProxy,
		"DATABASE_URL="+dbViaProxy,
		"CRM_URL="+h.crmURL,
		"CONSUMER_MAX_ATTEMPTS="+maxAttempts,
		"CONSUMER_LEASE="+leaseFor,
		"CRM_TIMEOUT="+crmTimeout,
		"CONSUMER_RECONNECT_MAX=2s",
		"LOG_FORMAT=json",
	)
	h.logger.Info("isolated deployment ready", "schema", h.schema, "queue_prefix", h.top.Prefix,
		"rabbitmq_proxies", strings.Join(proxyAddrs, ","), "postgres_proxy", h.pgProxy.Addr(), "crm", h.crmURL, "work_dir", h.work)
	return nil
}

func (h *harness) startCRM(ctx context.Context) error {
	addr, err := process.FreeAddr(ctx)
	if err != nil {
		return fmt.Errorf("mockcrm: %w", err)
	}
	crmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.crmCancel = cancel
	h.crm, err = start(crmCtx, h.logger, h.logDir, "mockcrm", filepath.Join(h.bin, "mockcrm"),
		[]string{"LOG_FORMAT=json"},
		[]string{
			"--addr", addr, "--fail-rate", "0.1", "--fail-after-create-rate", "0.05", "--latency", "2ms",
			"--reject-domains", rejectDomain, "--seed", strconv.Itoa(h.cfg.Seed),
		}, false)
	if err != nil {
		return err
	}
	h.crmURL = "http://" + addr
	return process.WaitHTTP(ctx, h.crm, h.crmURL+"/healthz", 20*time.Second)
}

// teardown stops mockcrm and the proxies and, unless kept, drops the
// schema and deletes the queues.
func (h *harness) teardown(keep bool) {
	if h.crmCancel != nil {
		h.crmCancel()
		<-h.crm.Done()
	}
	if h.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		h.cluster.startAll(ctx)
		cancel()
	}
	for _, p := range append(h.rabbitProxies, h.pgProxy) {
		if p != nil {
			_ = p.Close()
		}
	}
	if h.pool != nil {
		h.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if keep {
		h.logger.Info("kept for inspection", "schema", h.schema, "queue_prefix", h.top.Prefix, "work_dir", h.work)
	} else {
		if h.schema != "" {
			if conn, err := pgx.Connect(ctx, h.cfg.DatabaseURL); err == nil {
				if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{h.schema}.Sanitize()+" CASCADE"); err != nil {
					h.logger.Warn("drop schema", "schema", h.schema, "err", err)
				}
				_ = conn.Close(ctx)
			}
		}
		if h.top.Prefix != "" && h.amqpConn != nil {
			if conn, err := h.broker(ctx); err != nil {
				h.logger.Warn("delete queues", "prefix", h.top.Prefix, "err", err)
			} else if ch, err := conn.Channel(); err == nil {
				if err := h.top.Delete(ch); err != nil {
					h.logger.Warn("delete queues", "prefix", h.top.Prefix, "err", err)
				}
			}
		}
	}
	if h.amqpConn != nil {
		_ = h.amqpConn.Close()
	}
}

// broker returns the harness's own connection to RabbitMQ, dialled again
// through the URL list when it was lost (a cluster node stopped under it).
func (h *harness) broker(ctx context.Context) (*amqp.Connection, error) {
	h.amqpMu.Lock()
	defer h.amqpMu.Unlock()
	if h.amqpConn == nil || h.amqpConn.IsClosed() {
		conn, err := rabbit.Dial(ctx, h.cfg.AMQPURL, "chaos harness")
		if err != nil {
			return nil, err
		}
		h.amqpConn = conn
	}
	return h.amqpConn, nil
}

// crmPost calls mockcrm's admin API; body may be nil.
func (h *harness) crmPost(ctx context.Context, path string, body any) error {
	var r *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.crmURL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %s", path, resp.Status)
	}
	return nil
}

// crmGet decodes a GET answer into v (nil: only the status matters).
func (h *harness) crmGet(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.crmURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", path, resp.Status)
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// ensureDatabase creates the database of rawURL when it does not exist.
func ensureDatabase(ctx context.Context, rawURL string, logger *slog.Logger) error {
	conn, err := pgx.Connect(ctx, rawURL)
	if err == nil {
		return conn.Close(ctx)
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to %s: %w", pgstore.Redact(rawURL), err)
	}
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", perr)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to %s to create database %s: %w", pgstore.Redact(u.String()), name, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	logger.Info("created database", "database", name)
	return nil
}

func hostPort(rawURL, defaultPort string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", rabbit.Redact(rawURL), err)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func withHost(rawURL, host string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", rabbit.Redact(rawURL), err)
	}
	u.Host = host
	return u.String(), nil
}

// withSearchPath returns the URL with the schema as search_path and, when
// host is set, another host.
func withSearchPath(rawURL, schema, host string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", pgstore.Redact(rawURL), err)
	}
	if host != "" {
		u.Host = host
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
