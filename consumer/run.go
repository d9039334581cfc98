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
	"github.com/custimport/custimport/libs/crmrate"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
)

const summary = `consumer takes customers off RabbitMQ, stores each once in PostgreSQL and
creates each once in the CRM. Run as many consumers as you like, on any hosts.

Usage:
  consumer [flags]            consume until SIGINT or SIGTERM; serves /metrics,
                              /healthz and /readyz on --http-addr
  consumer migrate [flags]    apply the database migrations, then exit
  consumer status [flags]     print queue depths and customers per CRM state
  consumer replay [flags]     move dead letters back to the work queue (after a fix),
                              their customers back to pending; says how many
  consumer health [flags]     ask a running consumer's /healthz: exit 0 when it
                              answers ok, 1 otherwise (a container healthcheck)

Each subcommand's --help lists its own flags.`

// commands are the subcommands; "" is consuming.
var commands = map[string]func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error{
	"":        consume,
	"run":     consume,
	"migrate": migrate,
	"status":  status,
	"replay":  replay,
	"health":  health,
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	do, ok := commands[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q: want migrate, status, replay, health, or no command to consume", cmd)
	}
	return do(ctx, args, getenv, stdout, stderr)
}

// consume runs a worker until ctx is done, then lets it finish its batches
// within the shutdown timeout.
func consume(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, f, err := parseWorker(args, getenv, stderr)
	if errors.Is(err, errVersion) {
		_, err := fmt.Fprintln(stdout, buildinfo.String("consumer", version))
		return err
	}
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, f.LogFormat, f.LogLevel)
	if err != nil {
		return err
	}
	logger = logger.With("consumer", cfg.Name)
	openCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	store, err := openStore(openCtx, cfg.Services, logger)
	cancel()
	if err != nil {
		return err
	}
	defer store.Close()

	client, err := openCRM(ctx, cfg, store)
	if err != nil {
		return err
	}
	w := newWorker(cfg, logger, store, client)
	if cfg.HTTPAddr != httpOff {
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

const migrateSummary = `consumer migrate applies the database migrations that are not applied yet,
under a PostgreSQL advisory lock, and says how many it applied.

Usage:
  consumer migrate [flags]`

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s Services
	f := newFlags("consumer migrate", migrateSummary, getenv, stderr)
	f.bindDatabase(&s)
	logger, err := f.logger(args, func() error { return s.validateDatabase() }, stderr) //nolint:gocritic // s.validateDatabase would copy s before it is parsed
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.ConnectTimeout+time.Minute)
	defer cancel()
	applied, err := pgstore.Migrate(ctx, s.store())
	if err != nil {
		return err
	}
	logger.Info("migrations applied", "database", pgstore.Redact(s.DatabaseURL), "applied", applied)
	_, err = fmt.Fprintf(stdout, "applied %d migration(s)\n", len(applied))
	return err
}

// openCRM returns the CRM adapter cfg names, pacing its requests by the
// rate every consumer shares through store.
func openCRM(ctx context.Context, cfg Config, store *pgstore.Store) (crm.CRM, error) {
	limiter, err := crmrate.New(ctx, store.Pool(), crmrate.Config{Rate: cfg.CRMRate, Burst: cfg.CRMBurst})
	if err != nil {
		return nil, err
	}
	client, err := crm.Open(cfg.CRMKind, crm.Config{BaseURL: cfg.CRMURL, Token: cfg.CRMToken, Timeout: cfg.CRMTimeout, Limiter: limiter})
	if err != nil {
		return nil, fmt.Errorf("--crm-url: %w", err)
	}
	return client, nil
}

// openStore connects to Postgres, retrying until the connect timeout: in
// compose the consumer may start before the database answers. What waiting
// cannot cure (a malformed URL, a database that does not exist, refused
// credentials, a schema that is not migrated) fails at once.
func openStore(ctx context.Context, s Services, logger *slog.Logger) (*pgstore.Store, error) {
	return pgstore.OpenWaiting(ctx, s.store(), func(err error) {
		logger.Warn("PostgreSQL not reachable yet; retrying", "error", err)
	})
}
