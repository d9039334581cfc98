// Command mockcrm serves a flaky CRM (package crmmock) for demos and tests:
// injected 503s, latency, a rate limit, rejected domains, outages and
// idempotent replays, with a /stats endpoint that proves exactly-once
// creation. Run with --help for its flags and environment variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/cli"
	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/logging"
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() { cli.Main("mockcrm", run) }

// run serves until ctx ends, then shuts down within the configured bound.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 && args[0] == "health" {
		cmd, args = args[0], args[1:]
	}
	cfg, err := loadConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("mockcrm", version))
		return err
	}
	if cmd == "health" {
		return health(ctx, cfg.Addr, stdout)
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr().String()

	srv := &http.Server{
		Handler:           crmmock.New(cfg.Mock, logger),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// The message carries the address so that scripts and tests started with
	// --addr host:0 can find the port.
	logger.InfoContext(ctx, "listening on "+addr,
		slog.String("addr", addr),
		slog.Float64("fail_rate", cfg.Mock.FailRate),
		slog.Float64("customer_fail_rate", cfg.Mock.CustomerFailRate),
		slog.Float64("lost_reply_rate", cfg.Mock.FailAfterCreateRate),
		slog.Int("max_batch", cfg.Mock.MaxBatch),
		slog.Duration("latency", cfg.Mock.Latency),
		slog.Duration("latency_jitter", cfg.Mock.LatencyJitter),
		slog.Float64("rate_limit", cfg.Mock.RateLimit),
		slog.Any("reject_domains", cfg.Mock.RejectDomains),
		slog.Bool("unique_email", cfg.Mock.UniqueEmail),
		slog.Bool("token_set", cfg.Mock.Token != ""))

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		// Requests still running past the bound are cut off.
		_ = srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", addr, err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shut down: %w", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}

// health asks the mockcrm listening on addr for /healthz: nil when it
// answers 200, an error (exit status 1) otherwise. A wildcard host (":8081",
// "0.0.0.0:8081") is asked on loopback, as a container's healthcheck does.
func health(ctx context.Context, addr string, stdout io.Writer) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: want host:port: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: mockcrm at %s does not answer: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: mockcrm at %s answered %s", url, resp.Status)
	}
	_, err = fmt.Fprintln(stdout, "ok")
	return err
}
