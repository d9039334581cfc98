package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "watch" {
		return watch(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("web", version))
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, logger, runImporter(cfg, logger), nil)
}

// serve runs the service until ctx ends. ready, when set, gets the address
// it listens on (tests start it on port 0).
func serve(ctx context.Context, cfg Config, logger *slog.Logger, imp importFunc, ready chan<- string) error {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pg, err := openStore(openCtx, cfg, logger)
	cancel()
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := os.MkdirAll(cfg.UploadDir, 0o750); err != nil {
		return fmt.Errorf("create --upload-dir: %w", err)
	}

	addr := cfg.Addr
	if cfg.APIToken == "" {
		host, port, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		logger.Warn("no API token (--api-token, WEB_API_TOKEN): listening on loopback only, and every request is allowed", "addr", addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (--addr): %w", addr, err)
	}

	st := &store{pool: pg.Pool()}
	b := &broker{url: cfg.AMQPURL, name: "web " + cfg.Name, top: cfg.topology()}
	defer b.close()
	a := auth{token: cfg.APIToken}
	pg2, err := newPage(logger, a)
	if err != nil {
		_ = ln.Close()
		return err
	}
	streams, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	rn := newRunner(cfg, logger, st, imp)
	s := &server{cfg: cfg, logger: logger, store: st, pgstore: pg, broker: b, runner: rn, auth: a, page: pg2, streams: streams}

	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	logger.Info("listening on "+url, "addr", ln.Addr().String(), "name", cfg.Name,
		"upload_dir", cfg.UploadDir, "max_upload", cfg.MaxUpload, "token_set", cfg.APIToken != "",
		"database", pgstore.Redact(cfg.DatabaseURL))
	if ready != nil {
		ready <- ln.Addr().String()
	}

	adoptCtx, stopAdopt := context.WithCancel(ctx)
	adopted := make(chan struct{})
	go func() {
		defer close(adopted)
		rn.adopt(adoptCtx)
	}()

	select {
	case err := <-serveErr:
		stopAdopt()
		<-adopted
		rn.stop()
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	stopAdopt()
	<-adopted
	stopStreams()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		_ = srv.Close() // uploads still running past the bound are cut off
	}
	// Imports stop at their checkpoint; a restart resumes them.
	rn.stop()
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shut down: %w", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}

// openStore connects to Postgres, waiting for it while it does not answer:
// in compose the service may start before the database.
func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (*pgstore.Store, error) {
	return pgstore.OpenWaiting(ctx, cfg.store(), func(err error) {
		logger.Warn("PostgreSQL not reachable yet; retrying", "error", err)
	})
}
