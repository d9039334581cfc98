package crm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
)

// recordingLimiter counts waits and remembers what it was told to slow down by.
type recordingLimiter struct {
	mu    sync.Mutex
	waits int
	slows []time.Duration
	err   error // returned by Wait when set
}

func (l *recordingLimiter) Wait(context.Context, time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waits++
	return l.err
}

func (l *recordingLimiter) Slow(_ context.Context, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slows = append(l.slows, d)
}

func (l *recordingLimiter) counts() (int, []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waits, append([]time.Duration(nil), l.slows...)
}

func requests(n int) []crm.Request {
	reqs := make([]crm.Request, n)
	for i := range reqs {
		email := fmt.Sprintf("c%d@example.com", i)
		reqs[i] = crm.Request{Key: "key-" + email, Customer: crm.Customer{Email: email}}
	}
	return reqs
}

type batchBody struct {
	Customers []struct {
		Email          string `json:"email"`
		IdempotencyKey string `json:"idempotency_key"`
	} `json:"customers"`
}

func TestCreateBatchPerCustomerStatus(t *testing.T) {
	t.Parallel()

	type class int
	const (
		synced class = iota
		rejected
		transient
	)
	tests := []struct {
		status   int
		want     class
		replayed bool
		existed  bool
	}{
		{status: 201, want: synced},
		{status: 200, want: synced, replayed: true},
		{status: 409, want: synced, existed: true},
		{status: 400, want: rejected},
		{status: 404, want: rejected},
		{status: 422, want: rejected},
		{status: 408, want: transient},
		{status: 429, want: transient},
		{status: 500, want: transient},
		{status: 503, want: transient},
	}
	results := make([]map[string]any, len(tests))
	for i, tt := range tests {
		results[i] = map[string]any{"status": tt.status, "id": fmt.Sprintf("c_%d", i), "error": fmt.Sprintf("reason %d", i)}
	}
	var got batchBody
	b := setup(t, crm.Config{}, func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/customers/batch", r.URL.Path)
		require.Empty(t, r.Header.Get("Idempotency-Key"), "keys travel per customer")
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	})

	reqs := requests(len(tests))
	answers, err := b.client.Create(t.Context(), reqs)
	require.NoError(t, err)
	require.Len(t, answers, len(tests))
	require.Len(t, got.Customers, len(tests))
	for i, c := range got.Customers {
		require.Equal(t, reqs[i].Customer.Email, c.Email)
		require.Equal(t, reqs[i].Key, c.IdempotencyKey)
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			a := answers[i]
			switch tt.want {
			case synced:
				require.NoError(t, a.Err)
				require.Equal(t, crm.Result{ID: fmt.Sprintf("c_%d", i), Status: tt.status, Replayed: tt.replayed, Existed: tt.existed}, a.Result)
			case rejected:
				require.True(t, crm.IsPermanent(a.Err))
				require.ErrorIs(t, a.Err, crm.ErrRejected)
				require.ErrorContains(t, a.Err, fmt.Sprintf("reason %d", i))
			case transient:
				require.False(t, crm.IsPermanent(a.Err))
				require.True(t, crm.IsTemporary(a.Err))
			}
		})
	}
}

func TestCreateBatchRequestLevelErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		status    int
		header    []string
		permanent bool
		wait      time.Duration // told to the limiter
	}{
		{name: "429 with Retry-After", status: 429, header: []string{"Retry-After", "3"}, wait: 3 * time.Second},
		{name: "429 without", status: 429, wait: crm.DefaultSlowDown},
		{name: "503 with Retry-After", status: 503, header: []string{"Retry-After", "2"}, wait: 2 * time.Second},
		{name: "500", status: 500},
		{name: "401", status: 401, permanent: true},
		{name: "403", status: 403, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lim := &recordingLimiter{}
			b := setup(t, crm.Config{Limiter: lim}, answer(tt.status, `{"error":"no"}`, tt.header...))

			answers, err := b.client.Create(t.Context(), requests(3))
			require.Nil(t, answers)
			se, ok := errors.AsType[*crm.StatusError](err)
			require.True(t, ok)
			require.Equal(t, tt.status, se.Status)
			require.Equal(t, tt.permanent, crm.IsPermanent(err))
			waits, slows := lim.counts()
			require.Equal(t, 1, waits)
			if tt.wait > 0 {
				require.Equal(t, []time.Duration{tt.wait}, slows)
			} else {
				require.Empty(t, slows)
			}
		})
	}
}

func TestCreateBatchBadReplyIsTransient(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"results":[{"status":201}]}`, `not json`, `{"results":[{"status":201},{"status":0},{"status":201}]}`} {
		b := setup(t, crm.Config{}, answer(http.StatusOK, body))
		_, err := b.client.Create(t.Context(), requests(3))
		require.True(t, crm.IsTemporary(err), "%s: %v", body, err)
	}
}

func TestCreateBatchSplitsOn413(t *testing.T) {
	t.Parallel()

	const most = 3
	var (
		mu    sync.Mutex
		sizes []int
	)
	b := setup(t, crm.Config{}, func(w http.ResponseWriter, r *http.Request) {
		var body batchBody
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		mu.Lock()
		sizes = append(sizes, len(body.Customers))
		mu.Unlock()
		if len(body.Customers) > most {
			answer(http.StatusRequestEntityTooLarge, fmt.Sprintf(`{"error":"too many","max_batch":%d}`, most))(w, r)
			return
		}
		results := make([]map[string]any, len(body.Customers))
		for i, c := range body.Customers {
			results[i] = map[string]any{"status": 201, "id": c.Email}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	})

	reqs := requests(8)
	answers, err := b.client.Create(t.Context(), reqs)
	require.NoError(t, err)
	require.Len(t, answers, 8)
	for i, a := range answers {
		require.NoError(t, a.Err)
		require.Equal(t, reqs[i].Customer.Email, a.Result.ID, "answers stay in request order")
	}
	require.Equal(t, []int{8, 3, 3, 2}, sizes)

	// It remembers: the next large call is cut before it is sent.
	_, err = b.client.Create(t.Context(), requests(5))
	require.NoError(t, err)
	require.Equal(t, []int{8, 3, 3, 2, 3, 2}, sizes)
}

func TestCreateOneCustomerUsesSingleCall(t *testing.T) {
	t.Parallel()
	paths := make(chan string, 1)
	b := setup(t, crm.Config{}, func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path + " " + r.Header.Get("Idempotency-Key")
		answer(http.StatusCreated, `{"id":"c_1"}`)(w, r)
	})
	answers, err := b.client.Create(t.Context(), requests(1))
	require.NoError(t, err)
	require.Equal(t, []crm.Answer{{Result: crm.Result{ID: "c_1", Status: http.StatusCreated}}}, answers)
	require.Equal(t, "/customers key-c0@example.com", <-paths)
}

func TestCreateNotSent(t *testing.T) {
	t.Parallel()

	calls := make(chan struct{}, 10)
	handler := func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		answer(http.StatusCreated, `{"id":"c_1"}`)(w, r)
	}

	t.Cleanup(func() {
		if len(calls) > 0 {
			t.Error("a request was sent")
		}
	})
	t.Run("limiter refuses", func(t *testing.T) {
		t.Parallel()
		b := setup(t, crm.Config{Limiter: &recordingLimiter{err: errors.New("not before the lease ends")}}, handler)
		_, err := b.client.Create(t.Context(), requests(2))
		require.ErrorIs(t, err, crm.ErrNotSent)
		require.False(t, crm.IsTemporary(err))
		require.False(t, crm.IsPermanent(err))
	})
	t.Run("send-by passed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, crm.Config{}, handler)
		ctx := crm.WithSendBy(t.Context(), time.Now().Add(-time.Second))
		_, err := b.client.Create(ctx, requests(1))
		require.ErrorIs(t, err, crm.ErrNotSent)
	})
}

func TestOpen(t *testing.T) {
	t.Parallel()
	cfg := crm.Config{BaseURL: "http://crm"}
	c, err := crm.Open("generic", cfg)
	require.NoError(t, err)
	require.IsType(t, &crm.Client{}, c)
	c, err = crm.Open("hubspot", cfg)
	require.NoError(t, err)
	require.IsType(t, &crm.HubSpot{}, c)
	_, err = crm.Open("salesforce", cfg)
	require.ErrorContains(t, err, "generic|hubspot")
}
