// Package crmmock is a flaky CRM speaking the generic API that package crm
// calls, single (POST /customers) and batch (POST /customers/batch):
// injected 503s (for a whole request, for one customer, or after the
// customers are created), latency, one rate limit for all callers answered
// 429 + Retry-After, 413 above the batch maximum, 422 rejections, outage
// windows and idempotent replays. It counts creations per email, so a test can prove that
// every customer was created exactly once (Stats.Duplicates is empty).
//
// Server is an http.Handler: tests run it under httptest.NewServer, the
// mockcrm binary serves it on a port.
package crmmock

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxBody bounds a request body; a customer is a few hundred bytes.
const maxBody = 1 << 20

// Stats counts what the server did since it started or was last Reset.
type Stats struct {
	// Requests is every POST /customers (single calls).
	Requests int
	// BatchRequests is every POST /customers/batch.
	BatchRequests int
	// BatchCustomers is the customers sent in batch requests that were
	// admitted (not answered 429, 503 or 413 as a whole).
	BatchCustomers int
	// PeakPerSecond is the most requests, single and batch, that arrived
	// within one second of the clock (429s included).
	PeakPerSecond int
	// Created is every customer created, duplicates included.
	Created int
	// Replays is every answer served from the idempotency store.
	Replays int
	// Conflicts is every 409 for an email created under another key.
	Conflicts int
	// Failed is every injected 503: fail rate, customer fail rate (one
	// per customer), lost reply, outage.
	Failed int
	// LostReplies is every answer replaced by a 503 after the work was done.
	LostReplies int
	// RateLimited is every 429 answered.
	RateLimited int
	// Rejected is every 400, 401 and 422.
	Rejected int
	// Customers is the number of distinct emails created.
	Customers int
	// Duplicates lists the emails created more than once or met with a
	// conflict; empty when every customer was created exactly once.
	Duplicates []string
	// PerEmail is filled only on request (GET /stats?emails=1, Server.EmailStats).
	PerEmail map[string]EmailStats `json:",omitempty"`
}

// EmailStats counts what happened to one (normalised) email.
type EmailStats struct {
	Created, Replays, Conflicts int
}

// Record is a customer as the CRM stores it (GET /customers/{email}).
type Record struct {
	ID         string            `json:"id"`
	Email      string            `json:"email"`
	Name       string            `json:"name,omitempty"`
	FirstName  string            `json:"first_name,omitempty"`
	LastName   string            `json:"last_name,omitempty"`
	Phone      string            `json:"phone,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	EmailStats
}

// answerKind is what a stored Idempotency-Key answered first; the body is
// rebuilt from it on replay, which keeps each stored key small.
type answerKind uint8

const (
	answerCreated answerKind = iota + 1
	answerConflict
	answerRejectedDomain
)

// keyEntry is the first answer given to an Idempotency-Key.
type keyEntry struct {
	kind  answerKind
	id    uint32 // customer id for created and conflict answers
	email string // normalised; empty for invalid requests
}

// Server is the flaky CRM. Its zero value is not usable: call New.
type Server struct {
	logger *slog.Logger
	mux    *http.ServeMux

	mu          sync.Mutex
	cfg         Config
	rejects     map[string]struct{} // normalised cfg.RejectDomains
	limiter     *rate.Limiter       // nil when cfg.RateLimit is 0
	rng         *rand.Rand          // not safe for concurrent use: guarded by mu
	outageUntil time.Time
	keys        map[string]keyEntry
	customers   map[string]*Record // by normalised email
	nextID      uint32
	stats       Stats // PerEmail unused: Record.EmailStats holds it
	second      int64 // the Unix second being counted for PeakPerSecond
	inSecond    int   // requests that arrived in it
}

// New returns a Server behaving as cfg says. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	s := &Server{
		logger: logger,
		//nolint:gosec // Failure injection, not security: a seedable PRNG is the point.
		rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1)),
	}
	s.setConfigLocked(cfg)
	s.resetLocked()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /customers", s.handleCreate)
	mux.HandleFunc("POST /customers/batch", s.handleBatch)
	mux.HandleFunc("GET /customers/{email}", s.handleGetCustomer)
	mux.HandleFunc("GET /stats", s.handleStats)
	mux.HandleFunc("POST /admin/config", s.handleConfig)
	mux.HandleFunc("GET /admin/config", s.handleConfig)
	mux.HandleFunc("POST /admin/outage", s.handleOutage)
	mux.HandleFunc("POST /admin/reset", s.handleReset)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux = mux
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// SetConfig changes the server's behaviour from the next request on. The
// stored customers, keys and counters are kept; Seed is ignored.
func (s *Server) SetConfig(cfg Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setConfigLocked(cfg)
}

func (s *Server) setConfigLocked(cfg Config) {
	cfg.RejectDomains = append([]string(nil), cfg.RejectDomains...)
	if cfg.RateLimit != s.cfg.RateLimit {
		s.limiter = newLimiter(cfg.RateLimit)
	}
	s.rejects = make(map[string]struct{}, len(cfg.RejectDomains))
	for _, d := range NormalizeDomains(cfg.RejectDomains) {
		s.rejects[d] = struct{}{}
	}
	s.cfg = cfg
}

func newLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))
}

// Config returns the current configuration.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.RejectDomains = append([]string(nil), cfg.RejectDomains...)
	return cfg
}

// Outage answers every /customers request with 503 for d from now; d <= 0
// ends a running outage.
func (s *Server) Outage(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outageUntil = time.Now().Add(d)
}

// Reset forgets every customer, key and counter and ends any outage. The
// configuration is kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Server) resetLocked() {
	s.keys = make(map[string]keyEntry)
	s.customers = make(map[string]*Record)
	s.stats = Stats{}
	s.nextID = 0
	s.second, s.inSecond = 0, 0
	s.outageUntil = time.Time{}
	s.limiter = newLimiter(s.cfg.RateLimit)
}

// Stats returns the counters, without PerEmail.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Customers = len(s.customers)
	st.Duplicates = append([]string{}, s.stats.Duplicates...)
	return st
}

// EmailStats returns the counters with PerEmail filled: one entry per email
// ever seen in a creation, replay or conflict.
func (s *Server) EmailStats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Customers = len(s.customers)
	st.Duplicates = append([]string{}, s.stats.Duplicates...)
	st.PerEmail = make(map[string]EmailStats, len(s.customers))
	for email, rec := range s.customers {
		st.PerEmail[email] = rec.EmailStats
	}
	return st
}

// Customer returns the stored record of email (normalised before lookup).
func (s *Server) Customer(email string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.customers[normalizeEmail(email)]
	if !ok {
		return Record{}, false
	}
	out := *rec
	out.Attributes = cloneMap(rec.Attributes)
	return out, true
}

// arrived counts a request for PeakPerSecond; s.mu must be held.
func (s *Server) arrived(now time.Time) {
	if sec := now.Unix(); sec != s.second {
		s.second, s.inSecond = sec, 0
	}
	s.inSecond++
	s.stats.PeakPerSecond = max(s.stats.PeakPerSecond, s.inSecond)
}

// delay is the latency of one request; s.mu must be held.
func (s *Server) delay() time.Duration {
	d := s.cfg.Latency
	if j := s.cfg.LatencyJitter; j > 0 {
		d += time.Duration(s.rng.Int64N(int64(j) + 1))
	}
	return d
}

func normalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// formatID is fmt.Sprintf("cus_%08d", n), written without fmt: it is made
// for every customer answered.
func formatID(n uint32) string {
	var b [4 + 10]byte
	out := append(b[:0], "cus_"...)
	for pad := 8 - digits(n); pad > 0; pad-- {
		out = append(out, '0')
	}
	return string(strconv.AppendUint(out, uint64(n), 10))
}

func digits(n uint32) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// sleep waits d or until ctx ends, and reports whether the full wait happened.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readBody reads a request body of at most limit bytes, as io.ReadAll of
// an http.MaxBytesReader does, into one buffer of the announced length
// rather than growing one as it comes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength <= 0 || r.ContentLength > limit {
		return io.ReadAll(body)
	}
	buf := bytes.NewBuffer(make([]byte, 0, r.ContentLength+bytes.MinRead))
	_, err := buf.ReadFrom(body)
	return buf.Bytes(), err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
