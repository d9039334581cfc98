package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	status := func(code int) error { return &crm.StatusError{Status: code} }
	cases := []struct {
		name     string
		err      error
		attempts int
		kind     outcomeKind
		reason   string
	}{
		{"created", nil, 1, outcomeAck, "synced"},
		{"validation", status(422), 1, outcomeDead, reasonCRMRejected},
		{"bad request", status(400), 1, outcomeDead, reasonCRMRejected},
		{"our token is wrong", status(401), 1, outcomeRetry, "crm_transient"},
		{"forbidden to us", status(403), 1, outcomeRetry, "crm_transient"},
		{"unavailable", status(503), 1, outcomeRetry, "crm_transient"},
		{"timeout status", status(408), 1, outcomeRetry, "crm_transient"},
		{"slow down", status(429), 1, outcomeRetry, "crm_transient"},
		{"transport", &crm.TransportError{Op: "post", Err: errors.New("connection refused")}, 1, outcomeRetry, "crm_transient"},
		{"unavailable, last attempt", status(503), 5, outcomeDead, reasonCRMExhausted},
		{"validation, last attempt", status(422), 5, outcomeDead, reasonCRMRejected},
	}
	for _, tc := range cases {
		got := classify(crm.Result{}, tc.err, tc.attempts, 5)
		require.Equal(t, tc.kind, got.kind, tc.name)
		require.Equal(t, tc.reason, got.reason, tc.name)
	}
}

func TestBreakerCountsOnlyFailures(t *testing.T) {
	t.Parallel()
	cfg := Config{CircuitFailures: 2, CircuitOpen: 1e9}
	for _, tc := range []struct {
		err   error
		opens bool
	}{
		{&crm.StatusError{Status: 503}, true},
		{&crm.StatusError{Status: 401}, true},
		{&crm.StatusError{Status: 422}, false},
		{&crm.StatusError{Status: 429}, false},
		{context.Canceled, false},
		{fmt.Errorf("create customers: %w: no turn before the lease ends", crm.ErrNotSent), false},
	} {
		b := newBreaker(cfg, discardLogger())
		for range 3 {
			_, _ = b.Execute(func() ([]crm.Answer, error) { return nil, tc.err })
		}
		require.Equal(t, tc.opens, b.State().String() == "open", "%v", tc.err)
	}
}

func TestTruncateKeepsTextStorable(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		strings.Repeat("é", 600),               // a cut inside a character
		"Jos\xe9 " + strings.Repeat("x", 2000), // Latin-1 bytes
		"nul\x00byte",
	} {
		out := truncate(in, 1024)
		require.True(t, utf8.ValidString(out))
		require.NotContains(t, out, "\x00")
		require.LessOrEqual(t, len(out), 1024)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The metric label agrees with classify: a credentials problem is an
// outage, not a rejected customer.
func TestCRMOutcomeLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, crmSynced},
		{&crm.StatusError{Status: 401}, crmTransient},
		{&crm.StatusError{Status: 403}, crmTransient},
		{&crm.StatusError{Status: 422}, crmRejected},
		{&crm.StatusError{Status: 503}, crmTransient},
	} {
		require.Equal(t, tc.want, crmCallLabel(crm.Result{}, tc.err), "%v", tc.err)
	}
}
