package crmmock

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// maxBatchBody bounds a batch request body: a hundred customers take some
// tens of KiB.
const maxBatchBody = 16 << 20

// batchRequest is the body of POST /customers/batch: each customer is the
// single call's body plus its key.
type batchRequest struct {
	Customers []json.RawMessage `json:"customers"`
}

// batchResult is one customer's answer, in request order: 201 created, 200
// a replay, 409 exists, 4xx rejected, 503 failed for this customer alone.
type batchResult struct {
	Status int    `json:"status"`
	ID     string `json:"id,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	raw, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBody))

	s.mu.Lock()
	s.stats.BatchRequests++
	s.arrived(time.Now())
	delay := s.delay()
	s.mu.Unlock()

	if !sleep(ctx, delay) {
		return
	}

	s.mu.Lock()
	status, body, retryAfter := s.decideBatch(r.Header.Get("Authorization"), raw, readErr)
	s.mu.Unlock()

	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	s.logger.DebugContext(ctx, "batch request", slog.Int("status", status))
	writeJSON(w, status, body)
}

// decideBatch runs a batch request against the state; s.mu must be held.
// The request is admitted (or not) as a whole, like a single call; then each
// customer is decided as a single call would be, without the whole-request
// failures.
func (s *Server) decideBatch(auth string, raw []byte, readErr error) (status int, body any, retryAfter int) {
	if rep, ok := s.admit(auth); !ok {
		return rep.status, rep.body, rep.retryAfter
	}
	var req batchRequest
	switch {
	case readErr != nil:
		if _, tooLarge := errors.AsType[*http.MaxBytesError](readErr); tooLarge {
			s.stats.Rejected++
			return http.StatusRequestEntityTooLarge, map[string]any{"error": "body is too large", "max_batch": s.cfg.maxBatch()}, 0
		}
		s.stats.Rejected++
		return http.StatusBadRequest, map[string]string{"error": "body could not be read"}, 0
	case json.Unmarshal(raw, &req) != nil || len(req.Customers) == 0:
		s.stats.Rejected++
		return http.StatusBadRequest, map[string]string{"error": `body must be {"customers": [...]} with at least one customer`}, 0
	case len(req.Customers) > s.cfg.maxBatch():
		s.stats.Rejected++
		return http.StatusRequestEntityTooLarge, map[string]any{
			"error":     "at most " + strconv.Itoa(s.cfg.maxBatch()) + " customers per request",
			"max_batch": s.cfg.maxBatch(),
		}, 0
	}
	s.stats.BatchCustomers += len(req.Customers)

	results := make([]batchResult, len(req.Customers))
	anyCreated := false
	for i, one := range req.Customers {
		results[i] = s.decideBatchCustomer(one)
		anyCreated = anyCreated || results[i].Status == http.StatusCreated
	}
	if anyCreated && s.loseReply() {
		rep := lostReply()
		return rep.status, rep.body, 0
	}
	return http.StatusOK, map[string]any{"results": results}, 0
}

func (s *Server) decideBatchCustomer(raw json.RawMessage) batchResult {
	if s.cfg.CustomerFailRate > 0 && s.rng.Float64() < s.cfg.CustomerFailRate {
		s.stats.Failed++
		return batchResult{Status: http.StatusServiceUnavailable, Error: "service unavailable (injected for this customer)"}
	}
	var key struct {
		IdempotencyKey string `json:"idempotency_key"`
	}
	if json.Unmarshal(raw, &key) != nil || key.IdempotencyKey == "" {
		s.stats.Rejected++
		return batchResult{Status: http.StatusBadRequest, Error: "idempotency_key is required"}
	}
	req, invalid := parseCreate(raw, nil)
	rep, _ := s.createOne(key.IdempotencyKey, req, invalid)
	res := batchResult{Status: rep.status, ID: rep.body["id"], Error: rep.body["error"]}
	if rep.replayed && rep.status == http.StatusCreated {
		res.Status = http.StatusOK
	}
	return res
}
