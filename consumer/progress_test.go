package main

import (
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/testenv"
)

// One line per interval with what happened since the last, and none for an
// interval in which nothing did.
func TestProgressLogsEachBusyIntervalOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs testenv.Buffer
		m := newMetrics()
		done := make(chan struct{})
		go func() {
			defer close(done)
			logProgress(t.Context(), &m.progress, 10*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
		}()
		synctest.Wait() // it has taken its first snapshot

		m.batchStarted(200)
		m.stored(150, 50)
		for range 120 {
			m.crmCall(crm.Result{}, nil, time.Millisecond)
		}
		m.crmCall(crm.Result{}, &crm.StatusError{Status: 503}, time.Millisecond)
		m.batchDone(tally{retried: 1, dead: map[string]int{reasonInvalidMessage: 2}})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, 1, strings.Count(logs.String(), "msg=progress"), "logs: %q", logs.String())
		for _, want := range []string{"received=200", "stored=150", "synced=120", "retried=1", "dead_lettered=2", "received_per_s=20", "interval=10s"} {
			require.Contains(t, logs.String(), want)
		}

		time.Sleep(30 * time.Second) // nothing happens
		synctest.Wait()
		require.Equal(t, 1, strings.Count(logs.String(), "msg=progress"), "quiet intervals log nothing")

		m.batchStarted(5)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, 2, strings.Count(logs.String(), "msg=progress"))
		require.Contains(t, logs.String(), "received=5 stored=0")
	})
}

func TestProgressNeverWhenNegative(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs testenv.Buffer
		m := newMetrics()
		m.batchStarted(1)
		logProgress(t.Context(), &m.progress, -1, slog.New(slog.NewTextHandler(&logs, nil)))
		require.Empty(t, logs.String())
	})
}
