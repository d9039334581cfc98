// Package crmrate is the CRM request rate shared by every consumer, on any
// host: a window kept in one Postgres row, where the consumers already are.
// Each request takes its turn with one UPDATE ... RETURNING; a 429's
// Retry-After is stored beside it, so it slows every consumer.
//
// The rule is the one CRMs count by: at most Burst requests in any window of
// Burst/Rate seconds (HubSpot: 100 per 10 s is Rate 10, Burst 100). The row
// keeps the times of the last Burst requests granted; the next one goes at
// the earliest time that keeps the rule, which may be a little ahead (its
// caller sleeps until then). A token bucket would allow Burst + Rate requests
// in the second after a pause, more than such a CRM takes.
package crmrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says how fast all consumers together may call the CRM.
type Config struct {
	// Name names the shared row: one per CRM account. Default "crm".
	Name string
	// Rate is requests per second for all consumers together; 0 means no
	// limit (a 429's pause is still shared).
	Rate float64
	// Burst is the most requests in any window of Burst/Rate seconds.
	// Default: Rate rounded up (at most Rate requests in any second).
	Burst int
	// PauseRefresh is how often, without a rate, a consumer reads the
	// shared pause. Default 500ms.
	PauseRefresh time.Duration
}

// WithDefaults returns a copy of c with the zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = "crm"
	}
	if c.Burst == 0 && c.Rate > 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	if c.PauseRefresh == 0 {
		c.PauseRefresh = 500 * time.Millisecond
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("--crm-rate %v: want 0 (no limit) or more", c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("--crm-burst %d: want 1 or more", c.Burst)
	}
	return nil
}

// ErrNoRoom is matched by Wait's error when the rate has no room for a
// request before the time the caller gave.
var ErrNoRoom = errors.New("the shared CRM rate has no room in time")

// Limiter is the shared rate. It implements crm.Limiter. Safe for
// concurrent use.
type Limiter struct {
	cfg  Config
	pool *pgxpool.Pool

	mu          sync.Mutex
	pausedUntil time.Time // the shared pause as last read, or a local one
	readAt      time.Time // when pausedUntil was last read from the row
}

// New returns the limiter cfg describes, on the crm_rate table of pool's
// database (migration 00004), creating its row when missing.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Limiter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, pool: pool}
	if err := l.ensureRow(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Limiter) ensureRow(ctx context.Context) error {
	if _, err := l.pool.Exec(ctx, `INSERT INTO crm_rate (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, l.cfg.Name); err != nil {
		return fmt.Errorf("create the shared CRM rate %q: %w", l.cfg.Name, err)
	}
	return nil
}

// take asks for the next turn: the time it may go at (at) and the database's
// time now, and whether it was granted (only when at is within maxWait of
// now; otherwise nothing is used up).
//
// The row is locked (FOR UPDATE) before it is read, so concurrent takes
// queue on it and each sees the turns granted before it.
const take = `
WITH cur AS (
    SELECT name, sent, paused_until, clock_timestamp() AS now
    FROM crm_rate WHERE name = $1
    FOR UPDATE
), turn AS (
    SELECT name, sent, now, greatest(now, paused_until,
        CASE WHEN cardinality(sent) >= $2 THEN sent[cardinality(sent) - $2 + 1] + make_interval(secs => $3) END) AS at
    FROM cur
)
UPDATE crm_rate r
SET sent = CASE WHEN turn.at <= turn.now + make_interval(secs => $4)
                THEN (turn.sent || turn.at)[greatest(cardinality(turn.sent) + 2 - $2, 1):]
                ELSE turn.sent END
FROM turn WHERE r.name = turn.name
RETURNING turn.at, turn.now, turn.at <= turn.now + make_interval(secs => $4)`

// Wait blocks until a request may be sent. When by is set and the turn would
// come later, it returns ErrNoRoom at once, using up nothing.
func (l *Limiter) Wait(ctx context.Context, by time.Time) error {
	if l.cfg.Rate == 0 {
		return l.waitPause(ctx, by)
	}
	maxWait := time.Hour
	if !by.IsZero() {
		maxWait = time.Until(by)
		if maxWait < 0 {
			return ErrNoRoom
		}
	}
	at, now, granted, err := l.turn(ctx, maxWait)
	if err != nil {
		return err
	}
	if !granted {
		return fmt.Errorf("%w: next turn in %s", ErrNoRoom, at.Sub(now).Round(time.Millisecond))
	}
	// The database's clock decided the turn; sleep the difference, so that
	// clocks apart between hosts do not matter.
	if err := sleep(ctx, at.Sub(now)); err != nil {
		return err
	}
	return l.waitLocalPause(ctx, by)
}

// turn takes the next turn if it comes within maxWait; see take.
func (l *Limiter) turn(ctx context.Context, maxWait time.Duration) (at, now time.Time, granted bool, err error) {
	window := float64(l.cfg.Burst) / l.cfg.Rate
	err = l.pool.QueryRow(ctx, take, l.cfg.Name, l.cfg.Burst, window, maxWait.Seconds()).Scan(&at, &now, &granted)
	if errors.Is(err, pgx.ErrNoRows) {
		// The row was removed under us: create it again and ask once more.
		if err := l.ensureRow(ctx); err != nil {
			return at, now, false, err
		}
		err = l.pool.QueryRow(ctx, take, l.cfg.Name, l.cfg.Burst, window, maxWait.Seconds()).Scan(&at, &now, &granted)
	}
	if err != nil {
		return at, now, false, fmt.Errorf("take a turn of the shared CRM rate: %w", err)
	}
	return at, now, granted, nil
}

// waitPause waits out the shared pause without a rate: it reads the row at
// most every PauseRefresh, so an unlimited CRM costs no query per request.
func (l *Limiter) waitPause(ctx context.Context, by time.Time) error {
	l.mu.Lock()
	stale := time.Since(l.readAt) >= l.cfg.PauseRefresh
	l.mu.Unlock()
	if stale {
		var until, now time.Time
		err := l.pool.QueryRow(ctx, `SELECT greatest(paused_until, clock_timestamp()), clock_timestamp() FROM crm_rate WHERE name = $1`, l.cfg.Name).Scan(&until, &now)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			until, now = time.Time{}, time.Now()
		case err != nil:
			return fmt.Errorf("read the shared CRM pause: %w", err)
		}
		l.mu.Lock()
		l.readAt = time.Now()
		if local := time.Now().Add(until.Sub(now)); local.After(l.pausedUntil) {
			l.pausedUntil = local
		}
		l.mu.Unlock()
	}
	return l.waitLocalPause(ctx, by)
}

// waitLocalPause sleeps out the pause this process knows of.
func (l *Limiter) waitLocalPause(ctx context.Context, by time.Time) error {
	l.mu.Lock()
	until := l.pausedUntil
	l.mu.Unlock()
	if !by.IsZero() && until.After(by) {
		return fmt.Errorf("%w: the CRM asked to wait until %s", ErrNoRoom, until.Format(time.RFC3339))
	}
	return sleep(ctx, time.Until(until))
}

// Slow pauses every consumer for d: the CRM answered 429 (or 503 with
// Retry-After). The pause is stored beside the rate; this process keeps it
// too, so it holds even while the database does not answer.
func (l *Limiter) Slow(ctx context.Context, d time.Duration) {
	l.mu.Lock()
	if t := time.Now().Add(d); t.After(l.pausedUntil) {
		l.pausedUntil = t
	}
	l.mu.Unlock()
	// Best effort: losing it costs another 429, not a customer.
	_, _ = l.pool.Exec(ctx, `UPDATE crm_rate SET paused_until = greatest(paused_until, clock_timestamp() + make_interval(secs => $2)) WHERE name = $1`,
		l.cfg.Name, d.Seconds())
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
