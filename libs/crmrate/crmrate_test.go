package crmrate

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/testenv"
)

// limiters returns n limiters on one migrated schema, each with a pool of
// its own, as n consumer processes would have.
func limiters(t *testing.T, n int, cfg Config) []*Limiter {
	t.Helper()
	pg := testenv.MigratedPostgres(t)
	out := make([]*Limiter, n)
	for i := range out {
		store, err := pgstore.Open(t.Context(), pg)
		require.NoError(t, err)
		t.Cleanup(store.Close)
		out[i], err = New(t.Context(), store.Pool(), cfg)
		require.NoError(t, err)
	}
	return out
}

// TestTurnsKeepTheWindow takes turns from three limiters at once and checks
// the times the database granted, not when the requests ran: any Burst+1
// turns in a row span at least the window, however fast or slow the
// machine is.
func TestTurnsKeepTheWindow(t *testing.T) {
	t.Parallel()
	cfg := Config{Rate: 20, Burst: 4}
	ls := limiters(t, 3, cfg)
	window := time.Duration(float64(time.Second) * float64(cfg.Burst) / cfg.Rate)

	var (
		mu    sync.Mutex
		turns []time.Time
		wg    sync.WaitGroup
	)
	for _, l := range ls {
		for range 4 {
			wg.Go(func() {
				for range 5 {
					at, _, granted, err := l.turn(t.Context(), time.Hour)
					if err != nil || !granted {
						t.Errorf("turn: granted %v, %v", granted, err)
						return
					}
					mu.Lock()
					turns = append(turns, at)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	require.Len(t, turns, 60)
	slices.SortFunc(turns, func(a, b time.Time) int { return a.Compare(b) })
	for i := cfg.Burst; i < len(turns); i++ {
		require.GreaterOrEqual(t, turns[i].Sub(turns[i-cfg.Burst]), window,
			"turns %d and %d: more than %d requests within %s", i-cfg.Burst, i, cfg.Burst, window)
	}
	// 60 turns at 20/s with bursts of 4 need close to 3 s of turns.
	require.GreaterOrEqual(t, turns[len(turns)-1].Sub(turns[0]), 55*time.Second/20)
}

func TestNoRoomUsesNothingUp(t *testing.T) {
	t.Parallel()
	// A window of 1000 s: the second request has no room in the next second
	// on any machine.
	l := limiters(t, 1, Config{Rate: 0.001, Burst: 1})[0]

	require.NoError(t, l.Wait(t.Context(), time.Now().Add(time.Minute)))
	err := l.Wait(t.Context(), time.Now().Add(time.Second))
	require.ErrorIs(t, err, ErrNoRoom)

	at, now, granted, err := l.turn(t.Context(), time.Hour)
	require.NoError(t, err)
	require.True(t, granted)
	require.Greater(t, at.Sub(now), 990*time.Second, "the refused request took no turn")
	require.Less(t, at.Sub(now), 1000*time.Second+time.Second)
}

func TestSlowPausesEveryConsumer(t *testing.T) {
	t.Parallel()
	pg := testenv.MigratedPostgres(t)
	open := func(cfg Config) *Limiter {
		store, err := pgstore.Open(t.Context(), pg)
		require.NoError(t, err)
		t.Cleanup(store.Close)
		l, err := New(t.Context(), store.Pool(), cfg)
		require.NoError(t, err)
		return l
	}
	told := open(Config{Rate: 100})
	limited := open(Config{Rate: 100})
	require.NoError(t, limited.Wait(t.Context(), time.Now().Add(time.Minute)), "nothing paused yet")

	told.Slow(t.Context(), time.Hour) // a 429 with Retry-After: 3600

	by := time.Now().Add(time.Minute)
	require.ErrorIs(t, told.Wait(t.Context(), by), ErrNoRoom)
	require.ErrorIs(t, limited.Wait(t.Context(), by), ErrNoRoom, "another consumer with a rate")
	// Without a rate the pause is read from the row (at most every
	// PauseRefresh, and at the first request).
	unlimited := open(Config{})
	require.ErrorIs(t, unlimited.Wait(t.Context(), by), ErrNoRoom, "another consumer without a rate")
}

func TestConfig(t *testing.T) {
	t.Parallel()
	require.Equal(t, 3, Config{Rate: 2.5}.WithDefaults().Burst)
	require.Equal(t, 1, Config{Rate: 0.01}.WithDefaults().Burst)
	require.Equal(t, 7, Config{Rate: 20, Burst: 7}.WithDefaults().Burst)
	require.Equal(t, "crm", Config{}.WithDefaults().Name)
	require.ErrorContains(t, Config{Rate: -1}.validate(), "--crm-rate")
	require.ErrorContains(t, Config{Rate: 1, Burst: -1}.validate(), "--crm-burst")
}
