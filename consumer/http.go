package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyPingTimeout bounds the Postgres ping of one /readyz request: a probe
// that hangs tells an orchestrator less than one that says no.
const readyPingTimeout = 2 * time.Second

// httpShutdownTimeout bounds the wait for scrapes in progress when the
// consumer stops; they are short, and the consumer's own shutdown has its
// own bound.
const httpShutdownTimeout = 5 * time.Second

// readiness is the body of /readyz. NotReady names what is not ready.
type readiness struct {
	Ready      bool     `json:"ready"`
	RabbitMQ   string   `json:"rabbitmq"`
	Postgres   string   `json:"postgres"`
	CRMCircuit string   `json:"crm_circuit"`
	NotReady   []string `json:"not_ready,omitempty"`
}

// newHTTPHandler serves /metrics (Prometheus), /healthz (the process is
// alive) and /readyz (consuming RabbitMQ, Postgres answers, the CRM circuit
// is closed). pingDB is asked on each /readyz.
func newHTTPHandler(m *metrics, pingDB func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := ready(r.Context(), m, pingDB)
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rd)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("consumer: /metrics /healthz /readyz\n"))
	})
	return mux
}

func ready(ctx context.Context, m *metrics, pingDB func(context.Context) error) readiness {
	rd := readiness{Ready: true, RabbitMQ: "consuming", Postgres: "ok", CRMCircuit: "closed"}
	if !m.isConsuming.Load() {
		rd.RabbitMQ = "not consuming (connecting, reconnecting or stopping)"
		rd.NotReady = append(rd.NotReady, "rabbitmq")
	}
	ctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
	defer cancel()
	if err := pingDB(ctx); err != nil {
		rd.Postgres = "ping: " + err.Error()
		rd.NotReady = append(rd.NotReady, "postgres")
	}
	if m.circuitOpen() {
		rd.CRMCircuit = "open: the CRM is failing, deliveries are not taken"
		rd.NotReady = append(rd.NotReady, "crm_circuit")
	}
	rd.Ready = len(rd.NotReady) == 0
	return rd
}

// serveHTTP serves h on addr until the returned stop is called. It listens
// before returning, so that a port already taken is an error at start and
// not a log line later.
func serveHTTP(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) (stop func(), err error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// The endpoints serve operators, not the import: if they fail, the
		// consumer goes on and says so.
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP server stopped; /metrics, /healthz and /readyz are gone", "error", err)
		}
	})
	logger.Info("serving /metrics, /healthz and /readyz", "http_addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		wg.Wait()
	}, nil
}
