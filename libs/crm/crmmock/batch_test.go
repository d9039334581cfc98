package crmmock_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/crm/crmmock"
)

func requestsFor(prefix string, n int) []crm.Request {
	reqs := make([]crm.Request, n)
	for i := range reqs {
		email := fmt.Sprintf("%s%d@example.com", prefix, i)
		reqs[i] = crm.Request{Key: "key-" + email, Customer: crm.Customer{Email: email}}
	}
	return reqs
}

func TestBatchEveryCustomerStatus(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.RejectDomains = []string{"rejected.example"}
	b := setup(t, cfg)

	_, err := b.client.CreateCustomer(t.Context(), "earlier", crm.Customer{Email: "replayed@example.com"})
	require.NoError(t, err)
	_, err = b.client.CreateCustomer(t.Context(), "other-key", crm.Customer{Email: "exists@example.com"})
	require.NoError(t, err)

	reqs := []crm.Request{
		{Key: "new", Customer: crm.Customer{Email: "new@example.com"}},
		{Key: "earlier", Customer: crm.Customer{Email: "replayed@example.com"}},
		{Key: "mine", Customer: crm.Customer{Email: "exists@example.com"}},
		{Key: "bad", Customer: crm.Customer{Email: "x@rejected.example"}},
		{Key: "noat", Customer: crm.Customer{Email: "not-an-email"}},
	}
	answers, err := b.client.Create(t.Context(), reqs)
	require.NoError(t, err)
	require.Len(t, answers, len(reqs))

	require.NoError(t, answers[0].Err)
	require.Equal(t, http.StatusCreated, answers[0].Result.Status)
	require.NoError(t, answers[1].Err)
	require.True(t, answers[1].Result.Replayed)
	require.NoError(t, answers[2].Err)
	require.True(t, answers[2].Result.Existed)
	require.True(t, crm.IsPermanent(answers[3].Err))
	require.True(t, crm.IsPermanent(answers[4].Err))

	st := b.mock.Stats()
	require.Equal(t, 1, st.BatchRequests)
	require.Equal(t, 5, st.BatchCustomers)
	require.Equal(t, 3, st.Customers)
}

func TestBatchCustomerFailRate(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.CustomerFailRate = 0.5
	b := setup(t, cfg)

	answers, err := b.client.Create(t.Context(), requestsFor("f", 40))
	require.NoError(t, err)
	var failed int
	for _, a := range answers {
		if a.Err != nil {
			require.True(t, crm.IsTemporary(a.Err))
			failed++
		}
	}
	require.Positive(t, failed)
	require.Less(t, failed, 40)
	require.Equal(t, 40-failed, b.mock.Stats().Customers)
}

func TestBatchLostReplyResentIsReplayed(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.FailAfterCreateRate = 1
	b := setup(t, cfg)
	reqs := requestsFor("lost", 10)

	_, err := b.client.Create(t.Context(), reqs)
	require.True(t, crm.IsTemporary(err), "the reply is lost: %v", err)
	require.Equal(t, 10, b.mock.Stats().Customers, "yet they were created")

	b.mock.SetConfig(crmmock.DefaultConfig())
	answers, err := b.client.Create(t.Context(), reqs)
	require.NoError(t, err)
	for _, a := range answers {
		require.NoError(t, a.Err)
		require.True(t, a.Result.Replayed)
	}
	st := b.mock.Stats()
	require.Equal(t, 10, st.Created)
	require.Equal(t, 10, st.Replays)
	require.Equal(t, 1, st.LostReplies)
	require.Empty(t, st.Duplicates)
}

func TestBatchAboveMaxIs413AndSplit(t *testing.T) {
	t.Parallel()
	cfg := crmmock.DefaultConfig()
	cfg.MaxBatch = 4
	b := setup(t, cfg)

	resp := b.do(t, http.MethodPost, "/customers/batch", nil, `{"customers":[{},{},{},{},{}]}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.status)
	require.InDelta(t, 4, resp.body["max_batch"], 0)

	answers, err := b.client.Create(t.Context(), requestsFor("s", 10))
	require.NoError(t, err)
	require.Len(t, answers, 10)
	st := b.mock.Stats()
	require.Equal(t, 10, st.Customers)
	require.Equal(t, 10, st.BatchCustomers, "the refused request's customers are not counted")
}

func TestBatchBadBodies(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	for _, body := range []string{``, `[]`, `{"customers":[]}`, `{"customers":`} {
		resp := b.do(t, http.MethodPost, "/customers/batch", nil, body)
		require.Equal(t, http.StatusBadRequest, resp.status, body)
	}
	resp := b.do(t, http.MethodPost, "/customers/batch", nil, `{"customers":[{"email":"a@example.com"}]}`)
	require.Equal(t, http.StatusOK, resp.status)
	require.Contains(t, fmt.Sprint(resp.body["results"]), "idempotency_key is required")
}

// TestPeakPerSecond runs in a synctest bubble: its clock moves only when
// the test sleeps, so which second a request falls in is decided by the
// test, not by the machine's speed.
func TestPeakPerSecond(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mock := crmmock.New(crmmock.DefaultConfig(), nil)
		send := func(n int) {
			for i := range n {
				path, body := "/customers", fmt.Sprintf(`{"email":"p%d@example.com"}`, i)
				if i%2 == 1 {
					path, body = "/customers/batch", fmt.Sprintf(`{"customers":[{"email":"b%d@example.com","idempotency_key":"b%d"}]}`, i, i)
				}
				req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
				req.Header.Set("Idempotency-Key", fmt.Sprint("p", i))
				rec := httptest.NewRecorder()
				mock.ServeHTTP(rec, req)
				require.Less(t, rec.Code, 300, rec.Body.String())
			}
		}
		send(3)
		time.Sleep(time.Second)
		send(5)
		time.Sleep(time.Second)
		send(2)
		st := mock.Stats()
		require.Equal(t, 5, st.PeakPerSecond)
		require.Equal(t, 10, st.Requests+st.BatchRequests)
	})
}

// BenchmarkBatch measures the handler alone on batches of 100 new
// customers, as the consumer sends them, so the key and customer maps grow
// as they do in a long import. It reports the cost per customer; making
// the request is not counted.
func BenchmarkBatch(b *testing.B) {
	const size = 100
	mock := crmmock.New(crmmock.DefaultConfig(), nil)
	n := 0
	var body strings.Builder
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		body.Reset()
		body.WriteString(`{"customers":[`)
		for i := range size {
			n++
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"email":"user%d@example.com","name":"User %d","first_name":"User","last_name":"%d","phone":"+1-555-912-2853","attributes":{"company":"Globex"},"idempotency_key":"%032x"}`, n, n, n, n)
		}
		body.WriteString(`]}`)
		req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/customers/batch", strings.NewReader(body.String()))
		rec := httptest.NewRecorder()
		b.StartTimer()
		mock.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/customer")
}
