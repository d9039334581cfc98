package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/testenv"
)

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	pingOK := func(context.Context) error { return nil }
	pingDown := func(context.Context) error { return errors.New("connection refused") }
	for _, tc := range []struct {
		name         string
		consuming    bool
		circuitOpen  bool
		ping         func(context.Context) error
		wantStatus   int
		wantNotReady []string
	}{
		{"all ready", true, false, pingOK, http.StatusOK, nil},
		{"not consuming yet", false, false, pingOK, http.StatusServiceUnavailable, []string{"rabbitmq"}},
		{"postgres down", true, false, pingDown, http.StatusServiceUnavailable, []string{"postgres"}},
		{"circuit open", true, true, pingOK, http.StatusServiceUnavailable, []string{"crm_circuit"}},
		{"nothing ready", false, true, pingDown, http.StatusServiceUnavailable, []string{"rabbitmq", "postgres", "crm_circuit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMetrics()
			m.setConsuming(tc.consuming)
			m.setCircuit(tc.circuitOpen)
			srv := httptest.NewServer(newHTTPHandler(m, tc.ping))
			t.Cleanup(srv.Close)

			code, body := get(t, srv.URL+"/healthz")
			require.Equal(t, http.StatusOK, code, "/healthz answers while the process runs, ready or not")
			require.Equal(t, "ok\n", body)

			code, body = get(t, srv.URL+"/readyz")
			require.Equal(t, tc.wantStatus, code, body)
			var rd readiness
			require.NoError(t, json.Unmarshal([]byte(body), &rd))
			require.Equal(t, tc.wantStatus == http.StatusOK, rd.Ready)
			require.Equal(t, tc.wantNotReady, rd.NotReady)
		})
	}
}

func TestCircuitWatchWinsOverSet(t *testing.T) {
	t.Parallel()
	m := newMetrics()
	m.setConsuming(true)
	open := true
	m.watchCircuit(func() bool { return open })
	srv := httptest.NewServer(newHTTPHandler(m, func(context.Context) error { return nil }))
	t.Cleanup(srv.Close)

	code, _ := get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	_, body := get(t, srv.URL+"/metrics")
	require.Contains(t, body, "custimport_consumer_crm_circuit_open 1")
	open = false
	code, _ = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusOK, code)
	_, body = get(t, srv.URL+"/metrics")
	require.Contains(t, body, "custimport_consumer_crm_circuit_open 0")
}

func TestNilMetricsAreSafe(t *testing.T) {
	t.Parallel()
	var m *metrics
	require.NotPanics(t, func() {
		m.batchStarted(3)
		m.batchEnded(3)
		m.stored(1, 1)
		m.crmCall(crm.Result{}, nil, time.Millisecond)
		m.batchDone(tally{retried: 1, dead: map[string]int{reasonCRMRejected: 1}})
		m.setConsuming(true)
		m.setCircuit(true)
		m.watchCircuit(func() bool { return true })
	})
}

func TestMetricsListEveryName(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newHTTPHandler(newMetrics(), func(context.Context) error { return nil }))
	t.Cleanup(srv.Close)
	code, body := get(t, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, name := range metricNames {
		require.Contains(t, body, "# TYPE "+name+" ", "missing %s", name)
	}
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, "process_cpu_seconds_total")
}

var metricNames = []string{
	"custimport_consumer_deliveries_received_total",
	"custimport_consumer_customers_inserted_total",
	"custimport_consumer_duplicates_total",
	"custimport_consumer_crm_calls_total",
	"custimport_consumer_crm_call_duration_seconds",
	"custimport_consumer_retries_scheduled_total",
	"custimport_consumer_dead_lettered_total",
	"custimport_consumer_batch_size",
	"custimport_consumer_deliveries_in_flight",
	"custimport_consumer_crm_circuit_open",
	"custimport_consumer_rabbitmq_consuming",
	"custimport_build_info",
}

var httpAddrRE = regexp.MustCompile(`http_addr=(\S+)`)

// httpAddr waits for the consumer to say where it serves HTTP.
func httpAddr(t *testing.T, logs *testenv.Buffer) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		m := httpAddrRE.FindStringSubmatch(logs.String())
		if m == nil {
			return false
		}
		addr = m[1]
		return true
	}, 30*time.Second, 20*time.Millisecond, "no http_addr in the logs")
	return "http://" + addr
}

// metricValue returns the value of the series named exactly series.
func metricValue(body, series string) string {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

func TestMetricsAndReadinessOfARunningConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	b.publish(t,
		body(t, "a@example.com", 1),
		body(t, "b@example.com", 2),
		body(t, "a@example.com", 3), // a repeated row: a duplicate
		[]byte("not json"),
	)
	stop, logs := b.start(t)
	base := httpAddr(t, logs)

	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 2})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := get(t, base+"/metrics")
		assert.Equal(c, http.StatusOK, code)
		for series, want := range map[string]string{
			"custimport_consumer_deliveries_received_total":                       "4",
			"custimport_consumer_customers_inserted_total":                        "2",
			"custimport_consumer_duplicates_total":                                "1",
			`custimport_consumer_crm_calls_total{outcome="synced"}`:               "2",
			`custimport_consumer_dead_lettered_total{reason="invalid_message"}`:   "1",
			"custimport_consumer_crm_call_duration_seconds_count":                 "2",
			"custimport_consumer_deliveries_in_flight":                            "0",
			"custimport_consumer_rabbitmq_consuming":                              "1",
			"custimport_consumer_crm_circuit_open":                                "0",
			`custimport_consumer_dead_lettered_total{reason="crm_rejected"}`:      "0",
			`custimport_consumer_crm_calls_total{outcome="transient"}`:            "0",
			"custimport_consumer_retries_scheduled_total":                         "0",
			`custimport_consumer_dead_lettered_total{reason="database_rejected"}`: "0",
		} {
			assert.Equal(c, want, metricValue(body, series), series)
		}
	}, 10*time.Second, 50*time.Millisecond)

	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, stop())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/healthz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the HTTP server stops with the consumer")
}

func TestHTTPAddrTakenIsAClearError(t *testing.T) {
	t.Parallel()
	taken := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(taken.Close)
	b := setup(t, crmmock.DefaultConfig())
	b.env["CONSUMER_HTTP_ADDR"] = strings.TrimPrefix(taken.URL, "http://")
	err := run(t.Context(), nil, func(k string) string { return b.env[k] }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "--http-addr")
}

func TestEmptyHTTPAddrServesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	b.env["CONSUMER_HTTP_ADDR"] = "off"
	stop, logs := b.start(t)
	b.publish(t, body(t, "x@example.com", 1))
	b.waitCounts(t, map[pgstore.State]int64{pgstore.StateSynced: 1})
	require.NoError(t, stop())
	require.NotContains(t, logs.String(), "http_addr=")
}

func TestBadHTTPAddrIsNamed(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"--http-addr", "9090"}, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "--http-addr")
	err = run(t.Context(), []string{"status", "--management-url", "ftp://ops:secret@localhost:15672"}, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "--management-url")
	require.NotContains(t, fmt.Sprint(err), "secret", "a bad URL is not echoed: it may hold a password")
}
