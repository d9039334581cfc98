package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/pgstore"
)

// TestBatchReplyEveryCustomerStatus sends one batch whose customers the CRM
// answers each with another status, and checks what each comes to in
// Postgres and the dead-letter queue: each customer keeps its own state,
// attempts and retry step.
func TestBatchReplyEveryCustomerStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status   int
		state    pgstore.State
		attempts int
		reason   string // dead-letter reason, if any
	}{
		{status: 201, state: pgstore.StateSynced, attempts: 1},
		{status: 200, state: pgstore.StateSynced, attempts: 1}, // a replay
		{status: 409, state: pgstore.StateSynced, attempts: 1},
		{status: 400, state: pgstore.StateRejected, attempts: 1, reason: reasonCRMRejected},
		{status: 422, state: pgstore.StateRejected, attempts: 1, reason: reasonCRMRejected},
		{status: 500, state: pgstore.StateFailed, attempts: 2, reason: reasonCRMExhausted},
		{status: 503, state: pgstore.StateFailed, attempts: 2, reason: reasonCRMExhausted},
		// A 429 for one customer gives back its attempt: answered 429
		// once, then 201.
		{status: 429, state: pgstore.StateSynced, attempts: 1},
	}
	b := setup(t, crmmock.DefaultConfig())
	statusOf := map[string]int{}
	for _, tc := range cases {
		statusOf[fmt.Sprintf("s%d@example.com", tc.status)] = tc.status
	}
	var (
		mu         sync.Mutex
		limitedYet = map[string]bool{}
		batches    atomic.Int64
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Customers []struct {
				Email string `json:"email"`
				Key   string `json:"idempotency_key"`
			} `json:"customers"`
		}
		if r.URL.Path != "/customers/batch" || json.NewDecoder(r.Body).Decode(&req) != nil {
			// One customer left alone goes through the single call: answer
			// it the same way.
			var one struct {
				Email string `json:"email"`
			}
			_ = json.NewDecoder(r.Body).Decode(&one)
			w.WriteHeader(http.StatusCreated)
			return
		}
		batches.Add(1)
		results := make([]map[string]any, len(req.Customers))
		mu.Lock()
		for i, c := range req.Customers {
			require.NotEmpty(t, c.Key)
			status := statusOf[c.Email]
			if status == http.StatusTooManyRequests && limitedYet[c.Email] {
				status = http.StatusCreated
			}
			limitedYet[c.Email] = true
			results[i] = map[string]any{"status": status, "id": "id-" + c.Email, "error": fmt.Sprintf("answered %d", status)}
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	}))
	t.Cleanup(fake.Close)
	b.env["CRM_URL"] = fake.URL
	b.env["CRM_BATCH_SIZE"] = "20"
	b.env["CONSUMER_MAX_ATTEMPTS"] = "2"
	b.env["CONSUMER_BATCH_WAIT"] = "500ms" // one batch, whatever the machine's speed
	var bodies [][]byte
	for i, tc := range cases {
		bodies = append(bodies, body(t, fmt.Sprintf("s%d@example.com", tc.status), i))
	}
	b.publish(t, bodies...)
	b.startWorker(t, "w1", nil)

	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b.logs.String())
		}
	})
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StatePending: 0, pgstore.StateSynced: 4, pgstore.StateRejected: 2, pgstore.StateFailed: 2})
	require.Positive(t, batches.Load())
	for _, tc := range cases {
		var state pgstore.State
		var attempts int
		email := fmt.Sprintf("s%d@example.com", tc.status)
		require.NoError(t, b.store.Pool().QueryRow(t.Context(),
			`SELECT crm_state, crm_attempts FROM customers WHERE email = $1`, email).Scan(&state, &attempts))
		require.Equal(t, tc.state, state, email)
		require.Equal(t, tc.attempts, attempts, email)
	}
	reasons := map[string]string{}
	for _, d := range b.deadLetters(t) {
		var c struct {
			Email string `json:"email"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &c))
		reasons[strings.ToLower(c.Email)] = fmt.Sprint(d.Headers["x-death-reason"])
	}
	for _, tc := range cases {
		email := fmt.Sprintf("s%d@example.com", tc.status)
		if tc.reason == "" {
			require.NotContains(t, reasons, email)
			continue
		}
		require.Equal(t, tc.reason, reasons[email], email)
	}
}

// TestBatchLostReplyIsResentAsReplays loses the reply to the first request
// the CRM carried out (it created everyone in it, then the answer never came
// back): the customers go to their retry step, are sent again with the same
// keys, and are answered as replays. Nobody is created twice.
func TestBatchLostReplyIsResentAsReplays(t *testing.T) {
	t.Parallel()
	for _, batch := range []string{"1", "25"} {
		t.Run("batches of "+batch, func(t *testing.T) {
			t.Parallel()
			b := setup(t, crmmock.DefaultConfig())
			var requests atomic.Int64
			lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) == 1 {
					b.crm.ServeHTTP(httptest.NewRecorder(), r) // done, answer lost
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				b.crm.ServeHTTP(w, r)
			}))
			t.Cleanup(lossy.Close)
			b.env["CRM_URL"] = lossy.URL
			b.env["CRM_BATCH_SIZE"] = batch
			b.publishN(t, 60)
			b.startWorker(t, "w1", nil)

			b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 60, pgstore.StatePending: 0})
			st := b.crm.Stats()
			require.Equal(t, 60, st.Created)
			require.Equal(t, 60, st.Customers)
			require.Empty(t, st.Duplicates, "created twice")
			require.Positive(t, st.Replays, "the lost reply's customers were sent again and replayed")
			require.Equal(t, 2, b.maxAttempts(t), "the lost reply cost its customers one attempt")
			require.Empty(t, b.deadLetters(t))
		})
	}
}
