package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("consumer", version))
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	switch cmd {
	case "", "run":
		return consume(ctx, cfg, logger)
	case "migrate":
		return migrate(ctx, cfg, logger, stdout)
	case "replay":
		return replay(ctx, cfg, logger, stdout)
	case "status":
		return status(ctx, cfg, logger, stdout)
	default:
		return fmt.Errorf("unknown command %q: want migrate, status, replay, or no command to consume", cmd)
	}
}

func (c Config) store() pgstore.Config {
	return pgstore.Config{URL: c.DatabaseURL, MaxConns: int32(min(c.DBMaxConns, 1<<20))} //nolint:gosec // bounded above
}

func migrate(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+time.Minute)
	defer cancel()
	applied, err := pgstore.Migrate(ctx, cfg.store())
	if err != nil {
		return err
	}
	logger.Info("migrations applied", "database", pgstore.Redact(cfg.DatabaseURL), "applied", applied)
	_, err = fmt.Fprintf(stdout, "applied %d migration(s)\n", len(applied))
	return err
}

// consume runs a worker until ctx is done, then lets it finish its batch
// within the shutdown timeout.
func consume(ctx context.Context, cfg Config, logger *slog.Logger) error {
	logger = logger.With("consumer", cfg.Name)
	openCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	store, err := openStore(openCtx, cfg, logger)
	cancel()
	if err != nil {
		return err
	}
	defer store.Close()

	client, err := crm.New(crm.Config{BaseURL: cfg.CRMURL, Token: cfg.CRMToken, Timeout: cfg.CRMTimeout}, nil)
	if err != nil {
		return fmt.Errorf("--crm-url: %w", err)
	}
	w := newWorker(cfg, logger, store, client)
	if cfg.HTTPAddr != "" {
		// Served until the worker has stopped, so that the last scrape sees
		// the shutdown and /readyz says no while in-flight work finishes.
		stopHTTP, err := serveHTTP(ctx, cfg.HTTPAddr, newHTTPHandler(w.metrics, store.Ping), logger)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}
	return w.run(ctx)
}

// openStore connects to Postgres, retrying until the connect timeout: in
// compose the consumer may start before the database answers. A schema that
// is not migrated is not worth waiting for.
func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (*pgstore.Store, error) {
	for {
		store, err := pgstore.Open(ctx, cfg.store())
		if err == nil {
			return store, nil
		}
		if errors.Is(err, pgstore.ErrNotMigrated) || ctx.Err() != nil {
			return nil, err
		}
		logger.Warn("PostgreSQL not reachable yet; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}
