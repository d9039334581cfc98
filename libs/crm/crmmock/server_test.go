package crmmock_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/crm/crmmock"
)

type testBundle struct {
	mock   *crmmock.Server
	srv    *httptest.Server
	client *crm.Client
}

func setup(t *testing.T, cfg crmmock.Config) *testBundle {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	mock := crmmock.New(cfg, nil)
	srv := httptest.NewServer(mock)
	t.Cleanup(srv.Close)
	client, err := crm.New(crm.Config{BaseURL: srv.URL, Token: cfg.Token}, nil)
	require.NoError(t, err)
	return &testBundle{mock: mock, srv: srv, client: client}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

// do sends a raw request, for what the client does not expose.
func (b *testBundle) do(t *testing.T, method, path string, header map[string]string, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := response{status: resp.StatusCode, header: resp.Header}
	if len(bytes.TrimSpace(raw)) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out.body), "body %s", raw)
	}
	return out
}

func (b *testBundle) create(t *testing.T, key, body string) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/customers", map[string]string{"Idempotency-Key": key, "Content-Type": "application/json"}, body)
}

func TestReplaySameKey(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	first, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "Ada@Example.com ", Name: "Ada"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.Status)
	require.False(t, first.Replayed)
	require.NotEmpty(t, first.ID)

	second, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "ada@example.com", Name: "Ada"})
	require.NoError(t, err)
	require.True(t, second.Replayed)
	require.Equal(t, first.ID, second.ID)
	require.Equal(t, http.StatusCreated, second.Status)

	st := b.mock.Stats()
	require.Equal(t, 2, st.Requests)
	require.Equal(t, 1, st.Created)
	require.Equal(t, 1, st.Replays)
	require.Equal(t, 1, st.Customers)
	require.Empty(t, st.Duplicates)

	rec, ok := b.mock.Customer("ADA@example.com")
	require.True(t, ok)
	require.Equal(t, first.ID, rec.ID)
	require.Equal(t, "Ada", rec.Name)
	require.Equal(t, crmmock.EmailStats{Created: 1, Replays: 1}, rec.EmailStats)
}

func TestFailAfterCreateThenRetryReplays(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailAfterCreateRate = 1
	b := setup(t, cfg)

	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.True(t, crm.IsTemporary(err), "the answer is lost: %v", err)

	res, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.True(t, res.Replayed)
	require.Equal(t, http.StatusCreated, res.Status)

	st := b.mock.Stats()
	require.Equal(t, 1, st.Created)
	require.Equal(t, 1, st.Replays)
	require.Equal(t, 1, st.Failed)
	require.Empty(t, st.Duplicates)
}

func TestConflictOnSameEmailOtherKey(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	first, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	res, err := b.client.CreateCustomer(t.Context(), "k2", crm.Customer{Email: " A@EXAMPLE.COM"})
	require.NoError(t, err, "409 is success for the client")
	require.True(t, res.Existed)
	require.Equal(t, first.ID, res.ID)

	// The conflict is the first answer of k2, replayed as such.
	again, err := b.client.CreateCustomer(t.Context(), "k2", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.True(t, again.Existed)
	require.True(t, again.Replayed)

	st := b.mock.EmailStats()
	require.Equal(t, 1, st.Created)
	require.Equal(t, 1, st.Conflicts)
	require.Equal(t, 1, st.Replays)
	require.Equal(t, []string{"a@example.com"}, st.Duplicates)
	require.Equal(t, crmmock.EmailStats{Created: 1, Conflicts: 1, Replays: 1}, st.PerEmail["a@example.com"])
}

func TestNonUniqueEmailCreatesDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.Config{UniqueEmail: false})

	first, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	second, err := b.client.CreateCustomer(t.Context(), "k2", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.NotEqual(t, first.ID, second.ID)

	st := b.mock.Stats()
	require.Equal(t, 2, st.Created)
	require.Equal(t, 1, st.Customers)
	require.Equal(t, []string{"a@example.com"}, st.Duplicates)
}

func TestKeyReusedForAnotherEmail(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	_, err = b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "b@example.com"})
	require.True(t, crm.IsPermanent(err))
	require.Equal(t, 1, b.mock.Stats().Customers)
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	// A burst of one and a rate no machine is slow enough to stay under:
	// the second request is over the limit however long the first took.
	cfg.RateLimit = 0.01
	b := setup(t, cfg)

	_, err := b.client.CreateCustomer(t.Context(), "k0", crm.Customer{Email: "u0@example.com"})
	require.NoError(t, err)
	_, limited := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "u1@example.com"})
	require.Error(t, limited)
	require.True(t, crm.IsTemporary(limited))
	wait, ok := crm.RetryAfter(limited)
	require.True(t, ok)
	require.Greater(t, wait, 90*time.Second, "Retry-After says when the next request is accepted")

	// Batches count against the same limit: one request each.
	answers, err := b.client.Create(t.Context(), requestsFor("batch", 3))
	require.Nil(t, answers)
	require.True(t, crm.IsTemporary(err))
	st := b.mock.Stats()
	require.Equal(t, 2, st.RateLimited)
	require.Equal(t, 3, st.Requests+st.BatchRequests, "every request counted")

	b.mock.SetConfig(crmmock.DefaultConfig())
	_, err = b.client.CreateCustomer(t.Context(), "after", crm.Customer{Email: "after@example.com"})
	require.NoError(t, err, "lifting the limit takes effect at once")
}

func TestOutage(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	b.mock.Outage(time.Hour)
	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.True(t, crm.IsTemporary(err))
	wait, ok := crm.RetryAfter(err)
	require.True(t, ok)
	require.Greater(t, wait, 59*time.Minute)

	b.mock.Outage(0)
	_, err = b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)

	st := b.mock.Stats()
	require.Equal(t, 1, st.Failed)
	require.Equal(t, 1, st.Created)
	require.Zero(t, st.Replays, "a 503 in an outage stores nothing under the key")
}

func TestFailRate(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailRate = 1
	b := setup(t, cfg)

	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.True(t, crm.IsTemporary(err))
	require.Zero(t, b.mock.Stats().Created)

	cfg.FailRate = 0
	b.mock.SetConfig(cfg)
	res, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.False(t, res.Replayed)
	require.Equal(t, 1, b.mock.Stats().Failed)
}

func TestRejectDomains(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.RejectDomains = []string{"@Blocked.example "}
	b := setup(t, cfg)

	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "x@blocked.EXAMPLE"})
	require.True(t, crm.IsPermanent(err))
	require.ErrorIs(t, err, crm.ErrRejected)
	require.ErrorContains(t, err, "422")

	_, err = b.client.CreateCustomer(t.Context(), "k2", crm.Customer{Email: "x@fine.example"})
	require.NoError(t, err)

	st := b.mock.Stats()
	require.Equal(t, 1, st.Rejected)
	require.Equal(t, 1, st.Created)
}

func TestValidation(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		key    string
		body   string
		status int
	}{
		{name: "missing key", key: "", body: `{"email":"a@example.com"}`, status: http.StatusBadRequest},
		{name: "not json", key: "k", body: `{"email":`, status: http.StatusUnprocessableEntity},
		{name: "missing email", key: "k", body: `{"name":"A"}`, status: http.StatusUnprocessableEntity},
		{name: "bad email", key: "k", body: `{"email":"nobody"}`, status: http.StatusUnprocessableEntity},
		{name: "ok", key: "k", body: `{"email":"a@example.com"}`, status: http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, crmmock.DefaultConfig())
			resp := b.create(t, tt.key, tt.body)
			require.Equal(t, tt.status, resp.status)
			if tt.status >= 400 {
				require.NotEmpty(t, resp.body["error"])
			}
		})
	}
}

func TestInvalidAnswerIsReplayedToo(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	first := b.create(t, "k", `{"name":"A"}`)
	second := b.create(t, "k", `{"name":"A"}`)
	require.Equal(t, first.status, second.status)
	require.Equal(t, first.body, second.body)
	require.Equal(t, "true", second.header.Get("Idempotent-Replayed"))
}

func TestToken(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Token = "s3cret"
	b := setup(t, cfg)

	resp := b.create(t, "k1", `{"email":"a@example.com"}`)
	require.Equal(t, http.StatusUnauthorized, resp.status)

	_, err := b.client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err, "the client sends the token")
	require.Equal(t, 1, b.mock.Stats().Created)
}

func TestLatencyRespectsClientTimeout(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.Latency = time.Minute
	b := setup(t, cfg)
	client, err := crm.New(crm.Config{BaseURL: b.srv.URL, Timeout: 50 * time.Millisecond}, nil)
	require.NoError(t, err)

	_, err = client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.ErrorIs(t, err, crm.ErrTimeout)
	// httptest.Server.Close (cleanup) waits for the handler: it returns only
	// because the latency wait ends with the request.
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())

	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/healthz", nil, "").status)

	created := b.create(t, "k1", `{"email":"ada@example.com","first_name":"Ada","attributes":{"plan":"gold"}}`)
	require.Equal(t, http.StatusCreated, created.status)

	got := b.do(t, http.MethodGet, "/customers/ADA@example.com", nil, "")
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, created.body["id"], got.body["id"])
	require.Equal(t, "Ada", got.body["first_name"])
	require.Equal(t, map[string]any{"plan": "gold"}, got.body["attributes"])
	require.Equal(t, http.StatusNotFound, b.do(t, http.MethodGet, "/customers/nobody@example.com", nil, "").status)

	stats := b.do(t, http.MethodGet, "/stats", nil, "")
	require.Equal(t, http.StatusOK, stats.status)
	require.InDelta(t, 1, stats.body["Created"], 0)
	require.Equal(t, []any{}, stats.body["Duplicates"])
	require.NotContains(t, stats.body, "PerEmail")

	withEmails := b.do(t, http.MethodGet, "/stats?emails=1", nil, "")
	require.Equal(t, map[string]any{"ada@example.com": map[string]any{"Created": 1.0, "Replays": 0.0, "Conflicts": 0.0}}, withEmails.body["PerEmail"])

	// Partial config update: only fail_rate and latency change.
	cfgResp := b.do(t, http.MethodPost, "/admin/config", nil, `{"fail_rate":0.25,"latency":"5ms","reject_domains":["x.example"]}`)
	require.Equal(t, http.StatusOK, cfgResp.status)
	cfg := b.mock.Config()
	require.InDelta(t, 0.25, cfg.FailRate, 0)
	require.Equal(t, 5*time.Millisecond, cfg.Latency)
	require.Equal(t, []string{"x.example"}, cfg.RejectDomains)
	require.True(t, cfg.UniqueEmail, "fields not in the patch are kept")

	require.Equal(t, http.StatusBadRequest, b.do(t, http.MethodPost, "/admin/config", nil, `{"fail_rate":2}`).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, http.MethodPost, "/admin/config", nil, `{"latency":5}`).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, http.MethodPost, "/admin/config", nil, `{"fail_rat":0.5}`).status)
	require.InDelta(t, 0.25, b.mock.Config().FailRate, 0, "a rejected patch changes nothing")

	require.Equal(t, http.StatusOK, b.do(t, http.MethodPost, "/admin/outage?for=1h", nil, "").status)
	require.Equal(t, http.StatusServiceUnavailable, b.create(t, "k2", `{"email":"b@example.com"}`).status)
	require.Equal(t, http.StatusBadRequest, b.do(t, http.MethodPost, "/admin/outage?for=soon", nil, "").status)

	require.Equal(t, http.StatusOK, b.do(t, http.MethodPost, "/admin/reset", nil, "").status)
	require.Equal(t, crmmock.Stats{Duplicates: []string{}}, b.mock.Stats())
	b.mock.SetConfig(crmmock.DefaultConfig())
	require.Equal(t, http.StatusCreated, b.create(t, "k2", `{"email":"b@example.com"}`).status, "reset ends the outage")
}

// TestConcurrentSameKeys has many workers race to create the same customers
// with the same keys, as redelivered messages do: each email is created once.
func TestConcurrentSameKeys(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailRate = 0.2
	cfg.FailAfterCreateRate = 0.2
	b := setup(t, cfg)

	const (
		emails  = 50
		workers = 16
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range emails {
				n := (i + w) % emails
				cust := crm.Customer{Email: fmt.Sprintf("user%d@example.com", n)}
				key := fmt.Sprintf("key-%d", n)
				// Retry transient failures, as the consumer would.
				for {
					_, err := b.client.CreateCustomer(t.Context(), key, cust)
					if err == nil {
						break
					}
					if !crm.IsTemporary(err) {
						t.Errorf("create %s: %v", cust.Email, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	st := b.mock.EmailStats()
	require.Equal(t, emails, st.Created)
	require.Equal(t, emails, st.Customers)
	require.Zero(t, st.Conflicts)
	require.Empty(t, st.Duplicates)
	// Every answer was a creation, a replay or an injected 503 (a 503 after
	// create counts in both Created and Failed): nothing else.
	require.GreaterOrEqual(t, st.Created+st.Replays+st.Failed, st.Requests)
	require.LessOrEqual(t, st.Created+st.Replays, st.Requests)
	require.GreaterOrEqual(t, st.Replays, emails*(workers-1))
	for email, es := range st.PerEmail {
		require.Equal(t, 1, es.Created, email)
	}
}

// BenchmarkCreate measures the handler alone, each iteration a new customer,
// so the key and customer maps grow as they do in a long import.
func BenchmarkCreate(b *testing.B) {
	mock := crmmock.New(crmmock.DefaultConfig(), nil)
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/customers",
			strings.NewReader(fmt.Sprintf(`{"email":"user%d@example.com","name":"U"}`, i)))
		req.Header.Set("Idempotency-Key", fmt.Sprint("key-", i))
		rec := httptest.NewRecorder()
		mock.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
