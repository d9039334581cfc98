package crmmock

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	gojson "github.com/goccy/go-json"
)

// maxBatchBody bounds a batch request body: a hundred customers take some
// tens of KiB.
const maxBatchBody = 16 << 20

// batchRequest is the body of POST /customers/batch: each customer is the
// single call's body plus its key.
type batchRequest struct {
	Customers []json.RawMessage `json:"customers"`
}

// wireBatch is the same body decoded in one pass, for one whose every
// customer is an object of the expected types (see parseBatch).
type wireBatch struct {
	Customers []struct {
		createRequest
		IdempotencyKey string `json:"idempotency_key"`
	} `json:"customers"`
}

// batchCustomer is one customer of a batch request, decoded: its key, the
// body and why it is invalid (0 when valid). A customer without a key (none,
// empty, not a string, not an object) is refused whatever its body, and has
// neither.
type batchCustomer struct {
	key     string
	req     createRequest
	invalid answerKind
}

// batchReply is the 200 answer: one result per customer, in request order.
type batchReply struct {
	Results []batchResult `json:"results"`
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
	raw, readErr := readBody(w, r, maxBatchBody)
	// Decoded before the lock is taken: that is most of a request's work,
	// and the other requests need not wait for it.
	var customers []batchCustomer
	if readErr == nil {
		customers = parseBatch(raw)
	}

	s.mu.Lock()
	s.stats.BatchRequests++
	s.arrived(time.Now())
	delay := s.delay()
	s.mu.Unlock()

	if !sleep(ctx, delay) {
		return
	}

	s.mu.Lock()
	status, body, retryAfter := s.decideBatch(r.Header.Get("Authorization"), customers, readErr)
	s.mu.Unlock()

	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if s.logger.Enabled(ctx, slog.LevelDebug) {
		s.logger.DebugContext(ctx, "batch request", slog.Int("status", status))
	}
	writeJSON(w, status, body)
}

// decideBatch runs a batch request against the state; s.mu must be held.
// The request is admitted (or not) as a whole, like a single call; then each
// customer is decided as a single call would be, without the whole-request
// failures.
func (s *Server) decideBatch(auth string, customers []batchCustomer, readErr error) (status int, body any, retryAfter int) {
	if rep, ok := s.admit(auth); !ok {
		return rep.status, rep.body, rep.retryAfter
	}
	switch {
	case readErr != nil:
		if _, tooLarge := errors.AsType[*http.MaxBytesError](readErr); tooLarge {
			s.stats.Rejected++
			return http.StatusRequestEntityTooLarge, map[string]any{"error": "body is too large", "max_batch": s.cfg.maxBatch()}, 0
		}
		s.stats.Rejected++
		return http.StatusBadRequest, map[string]string{"error": "body could not be read"}, 0
	case len(customers) == 0:
		s.stats.Rejected++
		return http.StatusBadRequest, map[string]string{"error": `body must be {"customers": [...]} with at least one customer`}, 0
	case len(customers) > s.cfg.maxBatch():
		s.stats.Rejected++
		return http.StatusRequestEntityTooLarge, map[string]any{
			"error":     "at most " + strconv.Itoa(s.cfg.maxBatch()) + " customers per request",
			"max_batch": s.cfg.maxBatch(),
		}, 0
	}
	s.stats.BatchCustomers += len(customers)

	results := make([]batchResult, len(customers))
	anyCreated := false
	for i, one := range customers {
		results[i] = s.decideBatchCustomer(one)
		anyCreated = anyCreated || results[i].Status == http.StatusCreated
	}
	if anyCreated && s.loseReply() {
		rep := lostReply()
		return rep.status, rep.body, 0
	}
	return http.StatusOK, batchReply{Results: results}, 0
}

// parseBatch decodes a batch body; nil when it is not {"customers": [...]}
// (or the list is empty). A body whose customers are all objects of the
// expected types, as package crm writes it, takes one pass of go-json,
// which reads it as encoding/json does (batch_internal_test.go holds it to
// that) in a third of the time; any other takes the customers one by one
// through encoding/json, as raw JSON, so that each is answered for itself.
func parseBatch(raw []byte) []batchCustomer {
	var wire wireBatch
	if gojson.Unmarshal(raw, &wire) == nil {
		out := make([]batchCustomer, len(wire.Customers))
		for i, c := range wire.Customers {
			if c.IdempotencyKey == "" {
				continue // refused whatever the body
			}
			out[i] = batchCustomer{key: c.IdempotencyKey, req: c.createRequest, invalid: checkCreate(c.createRequest)}
		}
		return out
	}
	return parseBatchEach(raw)
}

// parseBatchEach decodes a batch body customer by customer: the list as raw
// JSON, then each customer for its key and for its body, so that a customer
// of the wrong shape is refused alone.
func parseBatchEach(raw []byte) []batchCustomer {
	var req batchRequest
	if json.Unmarshal(raw, &req) != nil {
		return nil
	}
	out := make([]batchCustomer, len(req.Customers))
	for i, one := range req.Customers {
		var key struct {
			IdempotencyKey string `json:"idempotency_key"`
		}
		if json.Unmarshal(one, &key) != nil || key.IdempotencyKey == "" {
			continue
		}
		out[i].key = key.IdempotencyKey
		out[i].req, out[i].invalid = parseCreate(one, nil)
	}
	return out
}

func (s *Server) decideBatchCustomer(c batchCustomer) batchResult {
	if s.cfg.CustomerFailRate > 0 && s.rng.Float64() < s.cfg.CustomerFailRate {
		s.stats.Failed++
		return batchResult{Status: http.StatusServiceUnavailable, Error: "service unavailable (injected for this customer)"}
	}
	if c.key == "" {
		s.stats.Rejected++
		return batchResult{Status: http.StatusBadRequest, Error: "idempotency_key is required"}
	}
	rep, _ := s.createOne(c.key, c.req, c.invalid)
	res := batchResult{Status: rep.status, ID: rep.body.ID, Error: rep.body.Error}
	if rep.replayed && rep.status == http.StatusCreated {
		res.Status = http.StatusOK
	}
	return res
}
