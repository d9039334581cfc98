package crmmock

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Invalid-request answers, kept as kinds so a replay rebuilds the same body.
const (
	answerInvalidJSON answerKind = iota + 16
	answerMissingEmail
	answerBadEmail
	answerTooLarge
)

var answerMessages = map[answerKind]string{
	answerConflict:       "customer already exists",
	answerRejectedDomain: "email domain is not accepted",
	answerInvalidJSON:    "body is not a JSON customer",
	answerMissingEmail:   "email is required",
	answerBadEmail:       "email is not valid",
	answerTooLarge:       "body is too large",
}

// createRequest is the wire form of a customer, kept apart from crm.Customer
// so that a tag mistake in the client shows up as a failed test.
type createRequest struct {
	Email      string            `json:"email"`
	Name       string            `json:"name"`
	FirstName  string            `json:"first_name"`
	LastName   string            `json:"last_name"`
	Phone      string            `json:"phone"`
	Attributes map[string]string `json:"attributes"`
}

// reply is an answer decided under the lock and written after it, so a slow
// client never holds up the others.
type reply struct {
	status     int
	body       replyBody
	retryAfter int // seconds; 0 = no header
	replayed   bool
}

// replyBody is the JSON object of an answer. Its fields are in the order of
// their names and never set empty, so it is written byte for byte as the
// map of the same keys would be, without a map made for every customer.
type replyBody struct {
	Email string `json:"email,omitempty"`
	Error string `json:"error,omitempty"`
	ID    string `json:"id,omitempty"`
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	// Read the body first: only then does net/http watch the connection and
	// cancel ctx when the client hangs up during the latency wait.
	raw, readErr := readBody(w, r, maxBody)
	key := r.Header.Get("Idempotency-Key")

	s.mu.Lock()
	s.stats.Requests++
	s.arrived(time.Now())
	delay := s.delay()
	s.mu.Unlock()

	if !sleep(ctx, delay) {
		return // The client gave up; nobody reads an answer.
	}

	s.mu.Lock()
	rep := s.decide(r.Header.Get("Authorization"), key, raw, readErr)
	s.mu.Unlock()

	if rep.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(rep.retryAfter))
	}
	if rep.replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if s.logger.Enabled(ctx, slog.LevelDebug) {
		s.logger.DebugContext(ctx, "customer request",
			slog.String("idempotency_key", key), slog.Int("status", rep.status), slog.Bool("replayed", rep.replayed))
	}
	writeJSON(w, rep.status, rep.body)
}

// decide runs one creation request against the state; s.mu must be held.
// The order is that of a real service: availability and admission first,
// then authentication, then idempotency, then validation, then the work.
func (s *Server) decide(auth, key string, raw []byte, readErr error) reply {
	if rep, ok := s.admit(auth); !ok {
		return rep
	}
	if s.cfg.CustomerFailRate > 0 && s.rng.Float64() < s.cfg.CustomerFailRate {
		s.stats.Failed++
		return reply{status: http.StatusServiceUnavailable, body: replyBody{Error: "service unavailable (injected for this customer)"}}
	}
	if key == "" {
		s.stats.Rejected++
		return reply{status: http.StatusBadRequest, body: replyBody{Error: "Idempotency-Key header is required"}}
	}
	req, invalid := parseCreate(raw, readErr)
	rep, created := s.createOne(key, req, invalid)
	if created && s.loseReply() {
		return lostReply()
	}
	return rep
}

// admit decides whether a request (single or batch) is served at all:
// outage, rate limit, token, injected failure. s.mu must be held.
func (s *Server) admit(auth string) (reply, bool) {
	if wait := time.Until(s.outageUntil); wait > 0 {
		s.stats.Failed++
		return reply{
			status:     http.StatusServiceUnavailable,
			body:       replyBody{Error: "service unavailable (outage)"},
			retryAfter: int(math.Ceil(wait.Seconds())),
		}, false
	}
	if s.limiter != nil {
		now := time.Now()
		if r := s.limiter.ReserveN(now, 1); r.DelayFrom(now) > 0 {
			wait := r.DelayFrom(now)
			r.CancelAt(now)
			s.stats.RateLimited++
			return reply{
				status:     http.StatusTooManyRequests,
				body:       replyBody{Error: "rate limit exceeded"},
				retryAfter: max(1, int(math.Ceil(wait.Seconds()))),
			}, false
		}
	}
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+s.cfg.Token)) != 1 {
		s.stats.Rejected++
		return reply{status: http.StatusUnauthorized, body: replyBody{Error: "missing or wrong bearer token"}}, false
	}
	if s.cfg.FailRate > 0 && s.rng.Float64() < s.cfg.FailRate {
		s.stats.Failed++
		return reply{status: http.StatusServiceUnavailable, body: replyBody{Error: "service unavailable (injected)"}}, false
	}
	return reply{}, true
}

// loseReply decides whether the answer to a request that created someone
// is lost; s.mu must be held.
func (s *Server) loseReply() bool {
	if s.cfg.FailAfterCreateRate <= 0 || s.rng.Float64() >= s.cfg.FailAfterCreateRate {
		return false
	}
	s.stats.Failed++
	s.stats.LostReplies++
	return true
}

func lostReply() reply {
	return reply{status: http.StatusServiceUnavailable, body: replyBody{Error: "service unavailable (injected after create)"}}
}

// createOne creates one customer under key, or replays what key got first.
// created reports a new creation. s.mu must be held.
func (s *Server) createOne(key string, req createRequest, invalid answerKind) (rep reply, created bool) {
	email := normalizeEmail(req.Email)

	if prev, seen := s.keys[key]; seen {
		if prev.email != "" && email != "" && prev.email != email {
			s.stats.Rejected++
			s.logger.Warn("idempotency key reused for another email", slog.String("idempotency_key", key))
			return reply{status: http.StatusUnprocessableEntity, body: replyBody{Error: "Idempotency-Key was used for another customer"}}, false
		}
		s.stats.Replays++
		if rec, ok := s.customers[prev.email]; ok {
			rec.Replays++
		}
		rep := s.answer(prev)
		rep.replayed = true
		return rep, false
	}

	if invalid != 0 {
		s.stats.Rejected++
		entry := keyEntry{kind: invalid}
		s.keys[key] = entry
		return s.answer(entry), false
	}
	if _, reject := s.rejects[domainOf(email)]; reject {
		s.stats.Rejected++
		entry := keyEntry{kind: answerRejectedDomain, email: email}
		s.keys[key] = entry
		return s.answer(entry), false
	}

	rec, exists := s.customers[email]
	var entry keyEntry
	switch {
	case exists && s.cfg.UniqueEmail:
		s.stats.Conflicts++
		rec.Conflicts++
		entry = keyEntry{kind: answerConflict, id: idNumber(rec.ID), email: email}
	case exists:
		s.stats.Created++
		rec.Created++
		s.nextID++
		entry = keyEntry{kind: answerCreated, id: s.nextID, email: email}
	default:
		s.stats.Created++
		s.nextID++
		rec = &Record{
			ID:         formatID(s.nextID),
			Email:      email,
			Name:       req.Name,
			FirstName:  req.FirstName,
			LastName:   req.LastName,
			Phone:      req.Phone,
			Attributes: req.Attributes,
			CreatedAt:  time.Now().UTC(),
			EmailStats: EmailStats{Created: 1},
		}
		s.customers[email] = rec
		entry = keyEntry{kind: answerCreated, id: s.nextID, email: email}
	}
	s.keys[key] = entry
	if exists && rec.Created+rec.Conflicts == 2 {
		s.stats.Duplicates = append(s.stats.Duplicates, email)
	}
	return s.answer(entry), entry.kind == answerCreated
}

// answer rebuilds the answer a key got first.
func (s *Server) answer(e keyEntry) reply {
	switch e.kind {
	case answerCreated:
		return reply{status: http.StatusCreated, body: replyBody{ID: formatID(e.id), Email: e.email}}
	case answerConflict:
		return reply{status: http.StatusConflict, body: replyBody{Error: answerMessages[e.kind], ID: formatID(e.id)}}
	default:
		return reply{status: http.StatusUnprocessableEntity, body: replyBody{Error: answerMessages[e.kind]}}
	}
}

// parseCreate decodes a creation body; a non-zero kind says why it is invalid.
func parseCreate(raw []byte, readErr error) (createRequest, answerKind) {
	var req createRequest
	if readErr != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](readErr); tooLarge {
			return req, answerTooLarge
		}
		return req, answerInvalidJSON
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return req, answerInvalidJSON
	}
	return req, checkCreate(req)
}

// checkCreate says why a decoded creation body is invalid, or 0.
func checkCreate(req createRequest) answerKind {
	email := strings.TrimSpace(req.Email)
	switch {
	case email == "":
		return answerMissingEmail
	case strings.Count(email, "@") != 1 || strings.HasPrefix(email, "@") || strings.HasSuffix(email, "@"):
		return answerBadEmail
	}
	return 0
}

func domainOf(email string) string {
	_, domain, _ := strings.Cut(email, "@")
	return domain
}

// idNumber recovers the counter behind an id made by formatID.
func idNumber(id string) uint32 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(id, "cus_"), 10, 32)
	return uint32(n)
}

func (s *Server) handleGetCustomer(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.Customer(r.PathValue("email"))
	if !ok {
		writeError(w, http.StatusNotFound, "customer not found")
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("emails"); v != "" && v != "0" && v != "false" {
		writeJSON(w, http.StatusOK, s.EmailStats())
		return
	}
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, viewOf(s.Config()))
		return
	}
	var patch configPatch
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&patch); err != nil {
		writeError(w, http.StatusBadRequest, "decode config: "+err.Error())
		return
	}

	s.mu.Lock()
	next := patch.apply(s.cfg)
	err := next.Validate()
	if err == nil {
		s.setConfigLocked(next)
	}
	s.mu.Unlock()

	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.logger.InfoContext(r.Context(), "config changed",
		slog.Float64("fail_rate", next.FailRate),
		slog.Float64("customer_fail_rate", next.CustomerFailRate),
		slog.Float64("lost_reply_rate", next.FailAfterCreateRate),
		slog.Int("max_batch", next.maxBatch()),
		slog.Duration("latency", next.Latency),
		slog.Duration("latency_jitter", next.LatencyJitter),
		slog.Float64("rate_limit", next.RateLimit),
		slog.Any("reject_domains", next.RejectDomains),
		slog.Bool("unique_email", next.UniqueEmail),
		slog.Bool("token_set", next.Token != ""))
	writeJSON(w, http.StatusOK, viewOf(next))
}

func (s *Server) handleOutage(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("for"))
	if err != nil {
		writeError(w, http.StatusBadRequest, `query parameter "for" must be a duration such as 30s`)
		return
	}
	s.Outage(d)
	s.logger.InfoContext(r.Context(), "outage", slog.Duration("for", d))
	writeJSON(w, http.StatusOK, map[string]string{"outage_until": time.Now().Add(max(d, 0)).UTC().Format(time.RFC3339)})
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	s.Reset()
	s.logger.InfoContext(r.Context(), "reset")
	writeJSON(w, http.StatusOK, map[string]string{"status": "reset"})
}
