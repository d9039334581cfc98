package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/testenv"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

var listeningRE = regexp.MustCompile(`listening on ([^\s"]+)`)

// start runs mockcrm on a free port and returns its base URL; the server is
// stopped, and must have stopped cleanly, when the test ends.
func start(t *testing.T, args []string, getenv func(string) string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stderr := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), getenv, &bytes.Buffer{}, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancellation")
		}
	})

	var addr string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("run returned early: %v\n%s", err, stderr)
		default:
		}
		m := listeningRE.FindStringSubmatch(stderr.String())
		if m == nil {
			return false
		}
		addr = m[1]
		return true
	}, 5*time.Second, 10*time.Millisecond)
	return "http://" + addr
}

func TestRunServesCustomers(t *testing.T) {
	t.Parallel()
	base := start(t, []string{"--fail-rate", "0", "--latency", "0s", "--token", "s3cret"}, env(nil))

	client, err := crm.New(crm.Config{BaseURL: base, Token: "s3cret"}, nil)
	require.NoError(t, err)
	res, err := client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@example.com"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.Status)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/stats", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var st crmmock.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	require.Equal(t, 1, st.Created)
	require.Empty(t, st.Duplicates)
}

func TestRunEnvConfiguresServer(t *testing.T) {
	t.Parallel()
	base := start(t, nil, env(map[string]string{
		"MOCKCRM_FAIL_RATE":      "0",
		"MOCKCRM_LATENCY":        "1ms",
		"MOCKCRM_REJECT_DOMAINS": "blocked.example, other.example",
		"LOG_FORMAT":             "json",
	}))

	client, err := crm.New(crm.Config{BaseURL: base}, nil)
	require.NoError(t, err)
	_, err = client.CreateCustomer(t.Context(), "k1", crm.Customer{Email: "a@blocked.example"})
	require.True(t, crm.IsPermanent(err), "got %v", err)
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--help"}, env(nil), &stdout, &stderr)
	require.NoError(t, err)

	help := stdout.String()
	for _, want := range []string{
		"--addr", "MOCKCRM_ADDR", "127.0.0.1:8081",
		"--fail-rate", "MOCKCRM_FAIL_RATE", "default 0.1",
		"--lost-reply-rate", "MOCKCRM_LOST_REPLY_RATE",
		"--customer-fail-rate", "MOCKCRM_CUSTOMER_FAIL_RATE",
		"--max-batch", "MOCKCRM_MAX_BATCH", "default 100",
		"--latency", "MOCKCRM_LATENCY", "default 20ms",
		"--latency-jitter", "MOCKCRM_LATENCY_JITTER",
		"--rate-limit", "MOCKCRM_RATE_LIMIT",
		"--reject-domains", "MOCKCRM_REJECT_DOMAINS",
		"--token", "MOCKCRM_TOKEN",
		"--log-format", "LOG_FORMAT", "default text",
		"mockcrm health",
	} {
		require.Contains(t, help, want)
	}
	require.Empty(t, stderr.String())
}

func TestRunHelpHidesToken(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"-h"}, env(map[string]string{"MOCKCRM_TOKEN": "s3cret"}), &stdout, &bytes.Buffer{})
	require.NoError(t, err)
	require.NotContains(t, stdout.String(), "s3cret")
}

func TestRunBadConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "nope"},
		{name: "fail rate above 1", args: []string{"--fail-rate", "1.5"}, wantErr: "--fail-rate"},
		{name: "fail rate not a number", args: []string{"--fail-rate", "lots"}, wantErr: "fail-rate"},
		{name: "lost reply rate", args: []string{"--lost-reply-rate", "-0.1"}, wantErr: "--lost-reply-rate"},
		{name: "max batch", args: []string{"--max-batch", "0"}, wantErr: "--max-batch"},
		{name: "latency unparsable", args: []string{"--latency", "fast"}, wantErr: "latency"},
		{name: "latency negative", args: []string{"--latency", "-1s"}, wantErr: "--latency"},
		{name: "jitter unparsable", args: []string{"--latency-jitter", "10"}, wantErr: "latency-jitter"},
		{name: "log format", args: []string{"--log-format", "xml"}, wantErr: "--log-format"},
		{name: "env fail rate", env: map[string]string{"MOCKCRM_FAIL_RATE": "x"}, wantErr: "--fail-rate"},
		{name: "env latency", env: map[string]string{"MOCKCRM_LATENCY": "soon"}, wantErr: "MOCKCRM_LATENCY"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "serve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), tt.args, env(tt.env), &bytes.Buffer{}, &bytes.Buffer{})
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()

	cfg, err := loadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	want := defaultConfig()
	want.Mock.RejectDomains = []string{}
	require.Equal(t, want, cfg)

	cfg, err = loadConfig(
		[]string{"--fail-rate", "0.3", "--unique-email=false", "--fail-after-create-rate", "0.05"},
		env(map[string]string{"MOCKCRM_FAIL_RATE": "0.2", "MOCKCRM_RATE_LIMIT": "50", "MOCKCRM_ADDR": ":8081", "MOCKCRM_SEED": "7"}),
		io.Discard,
	)
	require.NoError(t, err)
	require.InDelta(t, 0.3, cfg.Mock.FailRate, 0, "a flag wins over the environment")
	require.InDelta(t, 50, cfg.Mock.RateLimit, 0)
	require.Equal(t, ":8081", cfg.Addr)
	require.False(t, cfg.Mock.UniqueEmail)
	require.Equal(t, 20*time.Millisecond, cfg.Mock.Latency, "defaults stay")
	require.InDelta(t, 0.05, cfg.Mock.FailAfterCreateRate, 0, "the former flag name still works")
	require.Equal(t, int64(7), cfg.Mock.Seed)
}

func TestRunListenError(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"--addr", "256.0.0.1:1"}, env(nil), &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "listen on")
}

func TestHealth(t *testing.T) {
	t.Parallel()
	base := start(t, nil, env(nil))
	addr := strings.TrimPrefix(base, "http://")

	var stdout bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"health", "--addr", addr}, env(nil), &stdout, &bytes.Buffer{}))
	require.Equal(t, "ok\n", stdout.String())

	// The same port on the wildcard address is asked on loopback.
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.NoError(t, run(t.Context(), []string{"health"}, env(map[string]string{"MOCKCRM_ADDR": ":" + port}), io.Discard, io.Discard))

	// Nothing listens on a port that was free a moment ago.
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	free := ln.Addr().String()
	require.NoError(t, ln.Close())
	err = run(t.Context(), []string{"health", "--addr", free}, env(nil), io.Discard, io.Discard)
	require.ErrorContains(t, err, "does not answer")
}
