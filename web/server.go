package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/custimport/custimport/libs/pgstore"
)

// server is the page and the API. It keeps nothing of its own but the
// uploads being received and the imports it runs: what it shows comes from
// Postgres and RabbitMQ, so several instances can serve one pipeline.
type server struct {
	cfg     Config
	logger  *slog.Logger
	store   *store
	pgstore *pgstore.Store
	broker  *broker
	runner  *runner
	auth    auth
	page    *page
	// streams ends the event streams at shutdown, which would otherwise
	// keep their connections busy until the shutdown timeout.
	streams context.Context
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)

	api := http.NewServeMux()
	api.HandleFunc("POST /api/v1/imports", s.createImport)
	api.HandleFunc("GET /api/v1/imports", s.listImports)
	api.HandleFunc("GET /api/v1/imports/{id}", s.getImport)
	api.HandleFunc("GET /api/v1/imports/{id}/rejects", s.getRejects)
	api.HandleFunc("GET /api/v1/imports/{id}/events", s.importEvents)
	api.HandleFunc("GET /api/v1/customers", s.listCustomers)
	api.HandleFunc("GET /api/v1/customers/{email}", s.getCustomer)
	api.HandleFunc("GET /api/v1/dead-letters", s.listDeadLetters)
	api.HandleFunc("POST /api/v1/dead-letters/replay", s.replayDeadLetters)
	api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: see the README for /api/v1")
	})
	mux.Handle("/api/", s.auth.api(api))

	mux.Handle("GET /assets/", s.page.assets())
	mux.HandleFunc("GET /login", s.page.login)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	pages := http.NewServeMux()
	pages.HandleFunc("GET /{$}", s.importsPage)
	pages.HandleFunc("GET /customers", s.customersPage)
	pages.HandleFunc("GET /dead-letters", s.deadLettersPage)
	pages.HandleFunc("POST /dead-letters/replay", s.replayPage)
	mux.Handle("/", s.auth.pages(pages))

	// Requests from another site's pages (a form posting to this one with
	// the session cookie) are refused; API clients send no Origin.
	return http.NewCrossOriginProtection().Handler(mux)
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError answers {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// fail answers an error from the store or the broker: 404 for what does
// not exist, 503 when a service is away, 500 otherwise (logged).
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.msg)
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errBrokerDown):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away.
	default:
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error: "+err.Error())
	}
}

// answer writes v as JSON, or the error as fail does.
func answer[T any](s *server, w http.ResponseWriter, r *http.Request, v T, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// intParam reads a positive integer query parameter, def when absent.
func intParam(r *http.Request, name string, def, maxVal int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxVal {
		return 0, fmt.Errorf("%s=%q: want a whole number from 1 to %d", name, v, maxVal)
	}
	return n, nil
}

func (s *server) listImports(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit", 50, 500)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	imps, err := s.store.listImports(r.Context(), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if imps == nil {
		imps = []importRow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"imports": imps})
}

func (s *server) getImport(w http.ResponseWriter, r *http.Request) {
	imp, err := s.importWithSettled(r.Context(), r.PathValue("id"))
	answer(s, w, r, imp, err)
}

// importWithSettled reads an import and says whether it is settled.
func (s *server) importWithSettled(ctx context.Context, id string) (importRow, error) {
	imp, err := s.store.getImport(ctx, id)
	if err != nil {
		return imp, err
	}
	imp.Settled, err = s.settled(ctx, imp)
	return imp, err
}

// settled reports an import the pipeline is done with: it is over, none of
// its customers is pending, and the work queue holds no message ready for a
// consumer (one of them could be a customer of this import not stored yet).
// The consumers' unacked deliveries do not show in the queue's count: those
// of this import show as pending customers once their batch is inserted, a
// moment later, which is why the event stream asks twice in a row.
func (s *server) settled(ctx context.Context, imp importRow) (bool, error) {
	if !imp.over() || imp.Customers.Pending > 0 {
		return false, nil
	}
	if imp.State == stateFailed && imp.Published == 0 {
		return true, nil
	}
	ready, err := s.broker.ready(ctx)
	if err != nil {
		return false, err
	}
	return ready == 0, nil
}

func (s *server) getRejects(w http.ResponseWriter, r *http.Request) {
	imp, err := s.store.getImport(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	job := s.runner.paths(imp.ID)
	f, err := openRejects(job.Rejects)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("import %s has no rejects report here (%v): it is written once publishing starts, in the upload folder of the instance that ran it", imp.ID, err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rejectsName(imp.FileName)))
	http.ServeContent(w, r, "", st.ModTime(), f)
}
