package crm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
)

type testBundle struct {
	srv    *httptest.Server
	client *crm.Client
}

// setup starts a CRM answering with handler and a client pointed at it.
func setup(t *testing.T, cfg crm.Config, handler http.HandlerFunc) *testBundle {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL
	client, err := crm.New(cfg, nil)
	require.NoError(t, err)
	return &testBundle{srv: srv, client: client}
}

func answer(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestCreateCustomerStatusClass(t *testing.T) {
	t.Parallel()

	type class int
	const (
		success class = iota
		permanent
		transient
	)
	tests := []struct {
		status int
		want   class
	}{
		{200, success},
		{201, success},
		{409, success},
		{400, permanent},
		{401, permanent},
		{403, permanent},
		{404, permanent},
		{422, permanent},
		{408, transient},
		{429, transient},
		{500, transient},
		{502, transient},
		{503, transient},
		{504, transient},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			b := setup(t, crm.Config{}, answer(tt.status, `{"id":"c_1","error":"because"}`))

			res, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
			switch tt.want {
			case success:
				require.NoError(t, err)
				require.Equal(t, tt.status, res.Status)
				require.Equal(t, "c_1", res.ID)
				require.Equal(t, tt.status == http.StatusConflict, res.Existed)
			case permanent:
				require.Error(t, err)
				require.True(t, crm.IsPermanent(err))
				require.False(t, crm.IsTemporary(err))
				require.ErrorIs(t, err, crm.ErrRejected)
				se, ok := errors.AsType[*crm.StatusError](err)
				require.True(t, ok)
				require.Equal(t, tt.status, se.Status)
				require.JSONEq(t, `{"id":"c_1","error":"because"}`, se.Body)
			case transient:
				require.Error(t, err)
				require.False(t, crm.IsPermanent(err))
				require.True(t, crm.IsTemporary(err))
				require.NotErrorIs(t, err, crm.ErrRejected)
			}
		})
	}
}

func TestCreateCustomerReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t, crm.Config{}, answer(http.StatusCreated, `{"id":"c_7"}`, "Idempotent-Replayed", "true"))

	res, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.Equal(t, crm.Result{ID: "c_7", Status: http.StatusCreated, Replayed: true}, res)
}

func TestCreateCustomerUnparsableSuccessIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, crm.Config{}, answer(http.StatusCreated, `<html>ok</html>`))

	res, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.Equal(t, crm.Result{Status: http.StatusCreated}, res)
}

func TestCreateCustomerSendsRequest(t *testing.T) {
	t.Parallel()

	var (
		mu  sync.Mutex
		got *http.Request
		raw []byte
	)
	b := setup(t, crm.Config{Token: "s3cret", UserAgent: "test-agent"}, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, raw = r, body
		mu.Unlock()
		answer(http.StatusCreated, `{"id":"c_1"}`)(w, r)
	})

	_, err := b.client.CreateCustomer(t.Context(), "key-42", crm.Customer{
		Email:      "ada@example.com",
		FirstName:  "Ada",
		LastName:   "Lovelace",
		Attributes: map[string]string{"plan": "gold"},
	})
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/customers", got.URL.Path)
	require.Equal(t, "application/json", got.Header.Get("Content-Type"))
	require.Equal(t, "key-42", got.Header.Get("Idempotency-Key"))
	require.Equal(t, "Bearer s3cret", got.Header.Get("Authorization"))
	require.Equal(t, "test-agent", got.Header.Get("User-Agent"))
	require.JSONEq(t, `{"email":"ada@example.com","first_name":"Ada","last_name":"Lovelace","attributes":{"plan":"gold"}}`, string(raw))
}

func TestCreateCustomerNoTokenNoAuthHeader(t *testing.T) {
	t.Parallel()

	auth := make(chan []string, 1)
	b := setup(t, crm.Config{}, func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Values("Authorization")
		answer(http.StatusCreated, `{"id":"c_1"}`)(w, r)
	})

	_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.Empty(t, <-auth)
}

func TestCreateCustomerTokenNeverInError(t *testing.T) {
	t.Parallel()
	b := setup(t, crm.Config{Token: "s3cret"}, answer(http.StatusUnauthorized, `{"error":"bad token"}`))

	_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

func TestCreateCustomerEmptyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, crm.Config{}, answer(http.StatusCreated, `{"id":"c_1"}`))

	_, err := b.client.CreateCustomer(t.Context(), "", crm.Customer{Email: "a@example.com"})
	require.ErrorContains(t, err, "idempotency key")
}

func TestCreateCustomerRetryAfter(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		status int
		header string
		want   time.Duration
		wantOK bool
	}{
		{name: "429 seconds", status: 429, header: "7", want: 7 * time.Second, wantOK: true},
		{name: "503 seconds", status: 503, header: "2", want: 2 * time.Second, wantOK: true},
		{name: "429 no header", status: 429, header: "", wantOK: false},
		{name: "429 garbage", status: 429, header: "soon", wantOK: false},
		{name: "500 ignores header", status: 500, header: "7", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hdr []string
			if tt.header != "" {
				hdr = []string{"Retry-After", tt.header}
			}
			b := setup(t, crm.Config{}, answer(tt.status, `{"error":"slow down"}`, hdr...))

			_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
			require.True(t, crm.IsTemporary(err))
			got, ok := crm.RetryAfter(err)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestCreateCustomerRetryAfterHTTPDate(t *testing.T) {
	t.Parallel()
	// The date is computed when the answer is written; the client reads it
	// against its own clock, so allow for the round trip and the
	// one-second resolution of HTTP dates.
	b := setup(t, crm.Config{}, func(w http.ResponseWriter, r *http.Request) {
		when := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
		answer(http.StatusTooManyRequests, "", "Retry-After", when)(w, r)
	})

	_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	got, ok := crm.RetryAfter(err)
	require.True(t, ok)
	require.InDelta(t, 30*time.Second, got, float64(2*time.Second))
}

func TestRetryAfterNotAStatusError(t *testing.T) {
	t.Parallel()
	_, ok := crm.RetryAfter(errors.New("boom"))
	require.False(t, ok)
	_, ok = crm.RetryAfter(nil)
	require.False(t, ok)
}

func TestStatusErrorBodyTruncated(t *testing.T) {
	t.Parallel()
	b := setup(t, crm.Config{}, answer(http.StatusUnprocessableEntity, strings.Repeat("x", 5000)))

	_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	se, ok := errors.AsType[*crm.StatusError](err)
	require.True(t, ok)
	require.Len(t, se.Body, 1024)
}

func TestCreateCustomerTimeoutIsTransient(t *testing.T) {
	t.Parallel()

	release := make(chan struct{})
	b := setup(t, crm.Config{Timeout: 50 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		// The server notices a gone client only once the body is consumed.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	_, err := b.client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.Error(t, err)
	require.True(t, crm.IsTemporary(err))
	require.False(t, crm.IsPermanent(err))
	require.ErrorIs(t, err, crm.ErrTimeout)
	// The caller's own ctx is alive: nothing may look like its deadline or cancellation.
	require.NotErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, context.Canceled)
	te, ok := errors.AsType[*crm.TransportError](err)
	require.True(t, ok)
	require.True(t, te.Timeout())
}

func TestCreateCustomerCallerCancellation(t *testing.T) {
	t.Parallel()

	arrived := make(chan struct{})
	release := make(chan struct{})
	b := setup(t, crm.Config{Timeout: time.Minute}, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()

	_, err := b.client.CreateCustomer(ctx, "key-1", crm.Customer{Email: "a@example.com"})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, crm.IsTemporary(err), "a shutdown is not a CRM failure")
	require.False(t, crm.IsPermanent(err))
	_, isTransport := errors.AsType[*crm.TransportError](err)
	require.False(t, isTransport)
}

func TestCreateCustomerConnectionRefused(t *testing.T) {
	t.Parallel()

	// A port that was free a moment ago: nothing listens there.
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	client, err := crm.New(crm.Config{BaseURL: "http://" + addr, Token: "s3cret"}, nil)
	require.NoError(t, err)

	_, err = client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.Error(t, err)
	require.True(t, crm.IsTemporary(err))
	require.False(t, crm.IsPermanent(err))
	require.NotContains(t, err.Error(), "s3cret")
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		cfg     crm.Config
		wantErr string
	}{
		{name: "missing base url", cfg: crm.Config{}, wantErr: "BaseURL"},
		{name: "bad scheme", cfg: crm.Config{BaseURL: "ftp://crm"}, wantErr: "BaseURL"},
		{name: "no host", cfg: crm.Config{BaseURL: "http://"}, wantErr: "BaseURL"},
		{name: "negative timeout", cfg: crm.Config{BaseURL: "http://crm", Timeout: -time.Second}, wantErr: "Timeout"},
		{name: "redacts password", cfg: crm.Config{BaseURL: "ftp://u:hunter2@crm"}, wantErr: "BaseURL"},
		{name: "ok", cfg: crm.Config{BaseURL: "https://crm.example.com/api/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := crm.New(tt.cfg, nil)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	cfg := crm.Config{BaseURL: "http://crm"}.WithDefaults()
	require.Equal(t, crm.DefaultTimeout, cfg.Timeout)
	require.Equal(t, crm.DefaultUserAgent, cfg.UserAgent)
}

func TestBaseURLWithPath(t *testing.T) {
	t.Parallel()

	paths := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": "c_1"})
	}))
	t.Cleanup(srv.Close)

	client, err := crm.New(crm.Config{BaseURL: srv.URL + "/api/v1/"}, nil)
	require.NoError(t, err)
	_, err = client.CreateCustomer(t.Context(), "key-1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.Equal(t, "/api/v1/customers", <-paths)
}

func BenchmarkCreateCustomer(b *testing.B) {
	srv := httptest.NewServer(answer(http.StatusCreated, `{"id":"c_1"}`))
	b.Cleanup(srv.Close)
	client, err := crm.New(crm.Config{BaseURL: srv.URL}, nil)
	require.NoError(b, err)
	cust := crm.Customer{Email: "a@example.com", Name: "A"}

	for b.Loop() {
		if _, err := client.CreateCustomer(b.Context(), "key-1", cust); err != nil {
			b.Fatal(err)
		}
	}
}
