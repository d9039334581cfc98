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
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() { cli.Main("mockcrm", run) }

// run serves until ctx ends, then shuts down within the configured bound.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return writeUsage(stdout)
	}
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("mockcrm", version))
		return err
	}
	logger := newLogger(cfg, stderr)

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
		slog.Float64("fail_after_create_rate", cfg.Mock.FailAfterCreateRate),
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

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
