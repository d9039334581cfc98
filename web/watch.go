package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
)

const watchSummary = `web watch follows an import's events from the web service and prints each
change on stdout, until the import is settled (done, or failed). When the
service goes away it says so on stderr, reconnects with backoff and goes on
from the last event it got.

Usage: web watch [flags] [IMPORT]   (IMPORT: an import id; default the newest import)

Exit status: 0 when the import is done, 1 when it failed or cannot be followed.`

// watchConfig is what web watch is told.
type watchConfig struct {
	// URL is the web service. Default http://127.0.0.1:8080.
	URL string
	// APIToken is the bearer token (WEB_API_TOKEN).
	APIToken string
	// ReconnectMax is the longest wait between reconnections. Default 30s.
	ReconnectMax time.Duration
	// GiveUpAfter stops reconnecting after this long without a connection
	// (0: never). Default 0.
	GiveUpAfter time.Duration
	// StallTimeout is how long a connection may stay silent before it is
	// taken for lost (the service sends an event every second). Default 15s.
	StallTimeout time.Duration
	// Import is the import to follow; empty: the newest.
	Import              string
	LogFormat, LogLevel string
}

func parseWatchConfig(args []string, getenv func(string) string, stderr io.Writer) (watchConfig, error) {
	var c watchConfig
	s := envflag.New("web watch", watchSummary, getenv, stderr)
	s.String(&c.URL, "url", "WEB_URL", "http://127.0.0.1:8080", "`URL` of the web service")
	s.String(&c.APIToken, "api-token", "WEB_API_TOKEN", "", "bearer `token` of the web service (use the variable)")
	s.Duration(&c.ReconnectMax, "reconnect-max", "WEB_WATCH_RECONNECT_MAX", 30*time.Second, "longest wait between reconnections")
	s.Duration(&c.GiveUpAfter, "give-up-after", "WEB_WATCH_GIVE_UP_AFTER", 0, "stop after this long without reaching the service (0: never)")
	s.Duration(&c.StallTimeout, "stall-timeout", "WEB_WATCH_STALL_TIMEOUT", 15*time.Second, "a connection silent this long is taken for lost")
	s.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	// Flags may come after the import id too.
	fs := s.FlagSet()
	if err := s.Parse(args); err != nil {
		return c, err
	}
	rest := fs.Args()
	if len(rest) > 0 {
		c.Import = rest[0]
		if err := fs.Parse(rest[1:]); err != nil {
			return c, err
		}
		if fs.NArg() > 0 {
			return c, fmt.Errorf("unexpected argument %q: web watch follows one import", fs.Arg(0))
		}
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return c, fmt.Errorf("--url %q: want http://host:port of the web service", c.URL)
	case c.ReconnectMax <= 0:
		return c, fmt.Errorf("--reconnect-max %s: want a positive duration", c.ReconnectMax)
	case c.GiveUpAfter < 0:
		return c, fmt.Errorf("--give-up-after %s: want 0 or a positive duration", c.GiveUpAfter)
	case c.StallTimeout <= 0:
		return c, fmt.Errorf("--stall-timeout %s: want a positive duration", c.StallTimeout)
	}
	c.URL = strings.TrimRight(c.URL, "/")
	return c, nil
}

// errFatal marks an answer that reconnecting cannot change (401, 404).
var errFatal = errors.New("cannot follow the import")

// watcher follows one import's event stream.
type watcher struct {
	cfg    watchConfig
	logger *slog.Logger
	client *http.Client
	out    io.Writer

	lastID   string // the id of the last event received: Last-Event-ID
	lastLine string // the last line printed, not printed twice
}

func watch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseWatchConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	w := &watcher{cfg: cfg, logger: logger, out: stdout, client: &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 30 * time.Second,
	}}}
	return w.run(ctx)
}

func (w *watcher) run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 500 * time.Millisecond
	bo.MaxInterval = w.cfg.ReconnectMax
	var lostSince time.Time
	for {
		imp, progressed, err := w.follow(ctx)
		if err == nil {
			return imp.result()
		}
		if errors.Is(err, errFatal) || ctx.Err() != nil {
			return err
		}
		if progressed || lostSince.IsZero() {
			bo.Reset()
			lostSince = time.Now()
		}
		if w.cfg.GiveUpAfter > 0 && time.Since(lostSince) > w.cfg.GiveUpAfter {
			return fmt.Errorf("gave up after %s without the web service (--give-up-after): %w", w.cfg.GiveUpAfter, err)
		}
		wait := bo.NextBackOff()
		w.logger.Warn("connection to the web service lost; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond).String(), "last_event_id", w.lastID)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// result is the exit of web watch for a settled import.
func (r importRow) result() error {
	if r.State == stateFailed {
		return fmt.Errorf("import %s failed: %s", r.ID, r.Error)
	}
	return nil
}

func (w *watcher) request(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.cfg.URL+path, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFatal, err)
	}
	if w.cfg.APIToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.APIToken)
	}
	if w.lastID != "" {
		req.Header.Set("Last-Event-ID", w.lastID)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, body.Error)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return nil, fmt.Errorf("%w: %w", errFatal, err)
	}
	return nil, err
}

// follow reads the event stream until its done event (nil error) or until
// the connection is lost. progressed reports an event received.
func (w *watcher) follow(ctx context.Context) (importRow, bool, error) {
	if w.cfg.Import == "" {
		id, err := w.newest(ctx)
		if err != nil {
			return importRow{}, false, err
		}
		w.cfg.Import = id
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := w.request(ctx, "/api/v1/imports/"+url.PathEscape(w.cfg.Import)+"/events")
	if err != nil {
		return importRow{}, false, err
	}
	defer resp.Body.Close()
	if w.lastID != "" {
		w.logger.Info("reconnected; going on from the last event", "last_event_id", w.lastID)
	}

	// A connection that goes silent (a host gone without closing it) is
	// cut after StallTimeout.
	stall := time.AfterFunc(w.cfg.StallTimeout, cancel)
	defer stall.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		imp                 importRow
		progressed          bool
		id, event, dataText string
	)
	for sc.Scan() {
		stall.Reset(w.cfg.StallTimeout)
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				event = value
			case "data":
				dataText += value
			}
			continue
		}
		// A blank line ends an event.
		if dataText == "" {
			id, event = "", ""
			continue
		}
		if id != "" {
			w.lastID = id
		}
		progressed = true
		switch event {
		case "progress", "done":
			if err := json.Unmarshal([]byte(dataText), &imp); err != nil {
				return imp, progressed, fmt.Errorf("%w: event %s is not an import: %w", errFatal, id, err)
			}
			w.print(imp)
			if event == "done" {
				w.printEnd(imp)
				return imp, true, nil
			}
		case "error":
			w.logger.Warn("the web service reports a problem", "event", dataText)
		}
		id, event, dataText = "", "", ""
	}
	if err := sc.Err(); err != nil {
		return imp, progressed, fmt.Errorf("read events: %w", err)
	}
	return imp, progressed, errors.New("the event stream ended before the import was settled")
}

// newest returns the id of the newest import.
func (w *watcher) newest(ctx context.Context) (string, error) {
	resp, err := w.request(ctx, "/api/v1/imports?limit=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list struct {
		Imports []importRow `json:"imports"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return "", fmt.Errorf("read the list of imports: %w", err)
	}
	if len(list.Imports) == 0 {
		return "", fmt.Errorf("%w: the service has no import yet (upload one, or name one: web watch IMPORT)", errFatal)
	}
	w.logger.Info("following the newest import", "import_id", list.Imports[0].ID, "file", list.Imports[0].FileName)
	return list.Imports[0].ID, nil
}

// print writes one line per change of the import's counts.
func (w *watcher) print(r importRow) {
	c := r.Customers
	line := fmt.Sprintf("%s %-10s %5.1f %%  rows %d  published %d  invalid %d | stored %d  synced %d  retrying %d  rejected %d  failed %d",
		r.ID, r.State, r.Percent, r.Rows, r.Published, r.Rejected, c.Stored, c.Synced, c.Retrying, c.Rejected, c.Failed)
	if line == w.lastLine {
		return
	}
	w.lastLine = line
	_, _ = fmt.Fprintln(w.out, time.Now().UTC().Format(time.TimeOnly)+" "+line)
}

func (w *watcher) printEnd(r importRow) {
	msg := fmt.Sprintf("import %s (%s) %s: %d rows, %d published, %d invalid; %d customers stored first by it: %d synced, %d rejected by the CRM, %d failed",
		r.ID, r.FileName, r.State, r.Rows, r.Published, r.Rejected, r.Customers.Stored, r.Customers.Synced, r.Customers.Rejected, r.Customers.Failed)
	if r.Error != "" {
		msg += "; error: " + r.Error
	}
	_, _ = fmt.Fprintln(w.out, msg)
}
