package crm_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
)

// fakeHubSpot follows HubSpot's v3 contacts batch upsert: inputs by
// idProperty, results in no particular order, 207 with errors that name the
// ids they concern, 400 for a batch with an invalid contact, more than 100
// inputs refused, 429 with its rate-limit headers.
type fakeHubSpot struct {
	t        *testing.T
	mu       sync.Mutex
	contacts map[string]map[string]string // by email
	requests []int                        // inputs per request
	invalid  map[string]bool              // emails refused as INVALID_EMAIL
	failing  map[string]bool              // emails answered with an internal error
	limited  int                          // the next n requests are answered 429
}

func newFakeHubSpot(t *testing.T) (*fakeHubSpot, *httptest.Server) {
	t.Helper()
	f := &fakeHubSpot{t: t, contacts: map[string]map[string]string{}, invalid: map[string]bool{}, failing: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

type upsertBody struct {
	Inputs []struct {
		ID         string            `json:"id"`
		IDProperty string            `json:"idProperty"`
		Properties map[string]string `json:"properties"`
	} `json:"inputs"`
}

func (f *fakeHubSpot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost || r.URL.Path != "/crm/v3/objects/contacts/batch/upsert" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer pat-123" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprint(w, `{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}`)
		return
	}
	var body upsertBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, len(body.Inputs))
	w.Header().Set("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
	w.Header().Set("X-HubSpot-RateLimit-Max", "100")
	if f.limited > 0 {
		f.limited--
		w.Header().Set("X-HubSpot-RateLimit-Remaining", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = fmt.Fprint(w, `{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}`)
		return
	}
	w.Header().Set("X-HubSpot-RateLimit-Remaining", "99")
	if len(body.Inputs) > 100 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprint(w, `{"status":"error","message":"Batch input size must be at most 100","category":"VALIDATION_ERROR"}`)
		return
	}
	for _, in := range body.Inputs {
		if f.invalid[in.ID] {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"status":"error","message":"Property values were not valid: Email address %s is invalid","category":"VALIDATION_ERROR"}`, in.ID)
			return
		}
	}
	type record struct {
		ID         string            `json:"id"`
		New        bool              `json:"new"`
		Properties map[string]string `json:"properties"`
	}
	var results []record
	var errs []map[string]any
	for _, in := range body.Inputs {
		require.Equal(f.t, "email", in.IDProperty)
		if f.failing[in.ID] {
			errs = append(errs, map[string]any{"status": "error", "category": "INTERNAL_ERROR", "message": "try again", "context": map[string][]string{"ids": {in.ID}}})
			continue
		}
		_, existed := f.contacts[in.ID]
		f.contacts[in.ID] = in.Properties
		results = append(results, record{ID: fmt.Sprint(len(f.contacts)), New: !existed, Properties: in.Properties})
	}
	slices.Reverse(results) // HubSpot promises no order
	status := http.StatusOK
	reply := map[string]any{"status": "COMPLETE", "results": results}
	if len(errs) > 0 {
		status = http.StatusMultiStatus
		reply["errors"] = errs
		reply["numErrors"] = len(errs)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(reply)
}

func newHubSpot(t *testing.T, srv *httptest.Server, lim crm.Limiter) *crm.HubSpot {
	t.Helper()
	h, err := crm.NewHubSpot(crm.Config{BaseURL: srv.URL, Token: "pat-123", Limiter: lim}, nil)
	require.NoError(t, err)
	return h
}

func TestHubSpotUpsertsByEmail(t *testing.T) {
	t.Parallel()
	f, srv := newFakeHubSpot(t)
	h := newHubSpot(t, srv, nil)

	reqs := []crm.Request{
		{Key: "k1", Customer: crm.Customer{Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Phone: "+44 1"}},
		{Key: "k2", Customer: crm.Customer{Email: "alan@example.com", Name: "Alan Mathison Turing"}},
		{Key: "k3", Customer: crm.Customer{Email: "grace@example.com"}},
	}
	answers, err := h.Create(t.Context(), reqs)
	require.NoError(t, err)
	require.Len(t, answers, 3)
	for _, a := range answers {
		require.NoError(t, a.Err)
		require.Equal(t, http.StatusCreated, a.Result.Status)
		require.False(t, a.Result.Existed)
	}
	f.mu.Lock()
	require.Equal(t, map[string]string{"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace", "phone": "+44 1"}, f.contacts["ada@example.com"])
	require.Equal(t, map[string]string{"email": "alan@example.com", "firstname": "Alan", "lastname": "Mathison Turing"}, f.contacts["alan@example.com"])
	require.Equal(t, map[string]string{"email": "grace@example.com"}, f.contacts["grace@example.com"], "empty properties are not sent: HubSpot would clear them")
	f.mu.Unlock()

	// Sent again (a lost answer): upserted, nobody created twice.
	answers, err = h.Create(t.Context(), reqs)
	require.NoError(t, err)
	for _, a := range answers {
		require.NoError(t, a.Err)
		require.True(t, a.Result.Existed)
	}
	f.mu.Lock()
	require.Len(t, f.contacts, 3)
	f.mu.Unlock()
}

func TestHubSpotPerContactErrors(t *testing.T) {
	t.Parallel()
	f, srv := newFakeHubSpot(t)
	h := newHubSpot(t, srv, nil)
	reqs := requests(8)
	f.invalid[reqs[5].Customer.Email] = true
	f.failing[reqs[2].Customer.Email] = true

	answers, err := h.Create(t.Context(), reqs)
	require.NoError(t, err)
	for i, a := range answers {
		switch i {
		case 5:
			require.True(t, crm.IsPermanent(a.Err), "the invalid contact alone is rejected: %v", a.Err)
		case 2:
			require.True(t, crm.IsTemporary(a.Err), "%v", a.Err)
			require.False(t, crm.IsPermanent(a.Err))
		default:
			require.NoError(t, a.Err, "contact %d", i)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.contacts, 6)
	require.Equal(t, 8, f.requests[0])
	require.Greater(t, len(f.requests), 2, "the batch refused for one contact was split")
}

func TestHubSpotSplitsAbove100(t *testing.T) {
	t.Parallel()
	f, srv := newFakeHubSpot(t)
	h := newHubSpot(t, srv, nil)

	answers, err := h.Create(t.Context(), requests(250))
	require.NoError(t, err)
	require.Len(t, answers, 250)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, []int{100, 100, 50}, f.requests)
	require.Len(t, f.contacts, 250)
}

func TestHubSpotRateLimit(t *testing.T) {
	t.Parallel()
	f, srv := newFakeHubSpot(t)
	lim := &recordingLimiter{}
	h := newHubSpot(t, srv, lim)
	f.limited = 1

	_, err := h.Create(t.Context(), requests(3))
	require.True(t, crm.IsTemporary(err))
	d, ok := crm.RetryAfter(err)
	require.True(t, ok)
	require.Equal(t, 10*time.Second, d, "the window HubSpot names")
	_, slows := lim.counts()
	require.Contains(t, slows, 10*time.Second)

	answers, err := h.Create(t.Context(), requests(3))
	require.NoError(t, err)
	require.Len(t, answers, 3)
}

func TestHubSpotBadToken(t *testing.T) {
	t.Parallel()
	_, srv := newFakeHubSpot(t)
	h, err := crm.NewHubSpot(crm.Config{BaseURL: srv.URL, Token: "wrong"}, nil)
	require.NoError(t, err)
	_, err = h.Create(t.Context(), requests(2))
	se, ok := errors.AsType[*crm.StatusError](err)
	require.True(t, ok)
	require.Equal(t, http.StatusUnauthorized, se.Status)
	require.NotContains(t, err.Error(), "wrong")
	require.Contains(t, se.Body, "INVALID_AUTHENTICATION")
}
