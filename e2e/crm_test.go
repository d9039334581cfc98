package e2e_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSharedCRMRate runs three consumer processes sharing one CRM rate
// against a mockcrm that allows a little more: together they stay under its
// limit in every second, almost never hear a 429, and create every customer
// once. The consumers' rate is shared through Postgres, so how fast the
// machine is decides how long the run takes, not how many requests fall in
// one second.
func TestSharedCRMRate(t *testing.T) {
	cases := []struct {
		name               string
		batch, rate, limit int
		rows               int
	}{
		{name: "batches of 25", batch: 25, rate: 20, limit: 25, rows: 3000},
		{name: "one customer per call", batch: 1, rate: 40, limit: 50, rows: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "customers.csv")
			distinct := writeFile(t, file, tc.rows)
			p := newPipeline(t, "--fail-rate", "0", "--latency", "1ms", "--rate-limit", fmt.Sprint(tc.limit))
			p.env = append(p.env, fmt.Sprintf("CRM_RATE=%d", tc.rate), fmt.Sprintf("CRM_BATCH_SIZE=%d", tc.batch))
			for i := range 3 {
				p.consumer(t, fmt.Sprintf("c%d", i+1))
			}
			s := p.produce(t, file)
			require.True(t, s.Complete, s.Error)

			p.waitSynced(t, int64(distinct), 3*time.Minute)
			st := p.crmStats(t)
			requests := st.Requests + st.BatchRequests
			t.Logf("%d requests (%d batch, %d customers in batches), peak %d/s, %d answered 429",
				requests, st.BatchRequests, st.BatchCustomers, st.PeakPerSecond, st.RateLimited)
			require.LessOrEqual(t, st.PeakPerSecond, tc.limit, "requests in one second")
			require.Less(t, st.RateLimited*50, requests, "429s are under 2 %% of requests")
			require.Equal(t, distinct, st.Created)
			require.Empty(t, st.Duplicates)
			if tc.batch > 1 {
				require.Positive(t, st.BatchRequests)
			}
		})
	}
}

// TestBatchCallsWithLostReplies imports with batch calls against a CRM that
// fails a tenth of customers, a twentieth of whole batches and loses a
// twentieth of its replies after creating: resending the same keys is
// answered as replays, so nobody is created twice.
func TestBatchCallsWithLostReplies(t *testing.T) {
	file := filepath.Join(t.TempDir(), "customers.csv")
	distinct := writeFile(t, file, 4000)
	p := newPipeline(t, "--fail-rate", "0.05", "--customer-fail-rate", "0.1", "--lost-reply-rate", "0.05", "--latency", "1ms")
	p.env = append(p.env, "CRM_BATCH_SIZE=50")
	p.consumer(t, "c1")
	p.consumer(t, "c2")
	s := p.produce(t, file)
	require.True(t, s.Complete, s.Error)

	p.waitSynced(t, int64(distinct), 3*time.Minute)
	st := p.crmStats(t)
	t.Logf("%d batch requests, %d customers in them, %d lost replies, %d replays", st.BatchRequests, st.BatchCustomers, st.LostReplies, st.Replays)
	require.Equal(t, distinct, st.Created)
	require.Equal(t, distinct, st.Customers)
	require.Empty(t, st.Duplicates)
	require.Positive(t, st.LostReplies, "the CRM was meant to lose replies")
	require.Positive(t, st.Replays, "lost replies were resent and replayed")
	require.GreaterOrEqual(t, st.BatchCustomers, 10*st.BatchRequests, "at least 10 customers per batch request")
}
