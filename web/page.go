package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/pgstore"
)

// The page's files are in the binary: nothing to build or install.
//
//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// page renders the server-side HTML.
type page struct {
	logger *slog.Logger
	auth   auth
	tmpl   map[string]*template.Template
}

func newPage(logger *slog.Logger, a auth) (*page, error) {
	funcs := template.FuncMap{
		"num": func(n any) string {
			switch v := n.(type) {
			case int:
				return groupThousands(int64(v))
			case int64:
				return groupThousands(v)
			default:
				return fmt.Sprint(n)
			}
		},
		"pct":   func(p float64) string { return strconv.Itoa(int(p)) + " %" },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"bytes": humanBytes,
		"json": func(v any) string {
			b, _ := json.MarshalIndent(v, "", "  ")
			return string(b)
		},
	}
	p := &page{logger: logger, auth: a, tmpl: map[string]*template.Template{}}
	for _, name := range []string{"login", "imports", "customers", "dead"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		p.tmpl[name] = t
	}
	return p, nil
}

// view is what every template gets.
type view struct {
	Title, Nav string
	Auth       bool
	Data       any
}

func (p *page) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	titles := map[string][2]string{
		"login": {"Sign in", ""}, "imports": {"Imports", "imports"},
		"customers": {"Customers", "customers"}, "dead": {"Dead letters", "dead"},
	}
	var buf bytes.Buffer
	v := view{Title: titles[name][0], Nav: titles[name][1], Auth: p.auth.enabled(), Data: data}
	if err := p.tmpl[name].ExecuteTemplate(&buf, "base", v); err != nil {
		p.logger.Error("render page", "page", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
	_, _ = buf.WriteTo(w)
}

func (p *page) assets() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func (p *page) login(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, "login", map[string]any{"Next": r.URL.Query().Get("next")})
}

func (s *server) importsPage(w http.ResponseWriter, r *http.Request) {
	imps, err := s.store.listImports(r.Context(), 50)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The page follows the imports that are not settled yet; one look at
	// the queue settles the others.
	ready, rerr := s.broker.ready(r.Context())
	for i := range imps {
		imps[i].Settled = rerr == nil && ready == 0 && imps[i].over() && imps[i].Customers.Pending == 0
	}
	s.page.render(w, r, "imports", map[string]any{"Imports": imps})
}

func (s *server) customersPage(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{
		"States": []pgstore.State{pgstore.StatePending, pgstore.StateSynced, pgstore.StateRejected, pgstore.StateFailed},
	}
	q, err := customerQueryFrom(r)
	data["Query"] = q
	if err != nil {
		data["Error"] = err.Error()
		data["Page"] = customerPage{}
		w.WriteHeader(http.StatusBadRequest)
		s.page.render(w, r, "customers", data)
		return
	}
	res, err := s.searchCustomers(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data["Page"] = res
	link := func(cursor string) string {
		v := url.Values{}
		for k, x := range map[string]string{"q": q.Q, "state": q.State, "import": q.Import, "cursor": cursor} {
			if x != "" {
				v.Set(k, x)
			}
		}
		return "/customers?" + v.Encode()
	}
	if res.NextCursor != "" {
		data["Next"] = link(res.NextCursor)
	}
	if q.After != "" {
		data["First"] = link("")
	}
	s.page.render(w, r, "customers", data)
}

// reasonCount is a row of the dead-letters page.
type reasonCount struct {
	Reason string
	Count  int64
}

func (s *server) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{"Reason": r.URL.Query().Get("reason"), "Report": deadletter.Report{}}
	if n := r.URL.Query().Get("replayed"); n != "" {
		what := "dead letters"
		if reason := r.URL.Query().Get("replayed_reason"); reason != "" {
			what = "dead letters with reason " + reason
		}
		data["Flash"] = fmt.Sprintf("Replayed %s %s to the work queue.", n, what)
	}
	rep, err := s.inspectDeadLetters(r)
	if err != nil {
		data["Error"] = "Could not read the dead-letter queue: " + err.Error()
		w.WriteHeader(http.StatusServiceUnavailable)
		s.page.render(w, r, "dead", data)
		return
	}
	reasons := make([]reasonCount, 0, len(rep.ByReason))
	for k, n := range rep.ByReason {
		reasons = append(reasons, reasonCount{k, int64(n)})
	}
	sort.Slice(reasons, func(i, j int) bool {
		if reasons[i].Count != reasons[j].Count {
			return reasons[i].Count > reasons[j].Count
		}
		return reasons[i].Reason < reasons[j].Reason
	})
	data["Report"], data["Reasons"] = rep, reasons
	s.page.render(w, r, "dead", data)
}

// replayPage is the page's replay button: POST /dead-letters/replay, then
// back to the dead-letters page with what was done.
func (s *server) replayPage(w http.ResponseWriter, r *http.Request) {
	opts, err := replayOptionsFrom(w, r)
	if err == nil {
		var res deadletter.ReplayResult
		res, err = s.broker.replay(r.Context(), s.pgstore, opts)
		if err == nil {
			s.logger.Info("dead letters replayed", "reason", opts.Reason, "replayed", res.Replayed, "left", res.Left)
			v := url.Values{"replayed": {strconv.Itoa(res.Replayed)}}
			if opts.Reason != "" {
				v.Set("replayed_reason", opts.Reason)
			}
			http.Redirect(w, r, "/dead-letters?"+v.Encode(), http.StatusSeeOther)
			return
		}
	}
	status := http.StatusBadRequest
	if errors.Is(err, errBrokerDown) {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	s.page.render(w, r, "dead", map[string]any{"Error": "Replay failed: " + err.Error(), "Report": deadletter.Report{}})
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
