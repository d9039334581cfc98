package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/testenv"
)

func TestHealthAsksTheRunningConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t, crmmock.DefaultConfig())
	stop, logs := b.start(t)
	addr := strings.TrimPrefix(httpAddr(t, logs), "http://")

	var stdout testenv.Buffer
	require.NoError(t, run(t.Context(), []string{"health", "--http-addr", addr}, func(string) string { return "" }, &stdout, &testenv.Buffer{}))
	require.Equal(t, "ok\n", stdout.String())
	// The consumer's own variable is enough: the compose healthcheck sets nothing else.
	require.NoError(t, run(t.Context(), []string{"health"}, func(k string) string { return map[string]string{"CONSUMER_HTTP_ADDR": addr}[k] }, &testenv.Buffer{}, &testenv.Buffer{}))

	require.NoError(t, stop())
	err := run(t.Context(), []string{"health", "--http-addr", addr}, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "health")
}

func TestHealthSaysNoOnABadAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	err := run(t.Context(), []string{"health", "--http-addr", strings.TrimPrefix(srv.URL, "http://")}, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "503")
}

func TestHealthURLOfAListenAddress(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":9090":          "http://127.0.0.1:9090/healthz",
		"0.0.0.0:9090":   "http://127.0.0.1:9090/healthz",
		"[::]:9090":      "http://127.0.0.1:9090/healthz",
		"10.0.0.5:9090":  "http://10.0.0.5:9090/healthz",
		"localhost:9091": "http://localhost:9091/healthz",
	} {
		got, err := healthURL(addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, got, addr)
	}
	for _, bad := range []string{"off", "9090", ""} {
		_, err := healthURL(bad)
		require.ErrorContains(t, err, "--http-addr", bad)
	}
}
