package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/pgstore"
)

// Dead-letter reasons, in the x-death-reason header.
const (
	reasonInvalidMessage   = "invalid_message"
	reasonDatabaseRejected = "database_rejected"
	reasonCRMRejected      = "crm_rejected"
	reasonCRMExhausted     = "crm_attempts_exhausted"
)

type outcomeKind int

const (
	outcomeNone  outcomeKind = iota // not decided (yet)
	outcomeAck                      // done: synced now, or already
	outcomeRetry                    // a copy waits in a retry queue
	outcomeDead                     // given up: a copy goes to the dead-letter queue
)

// outcome is what a delivery comes to. Every error becomes one here, in
// classify, and nowhere else.
type outcome struct {
	kind     outcomeKind
	reason   string // dead-letter reason, or why it was acked
	err      error
	attempts int
	crmID    string
}

func ack(why string) outcome { return outcome{kind: outcomeAck, reason: why} }

func deadLetter(reason string, err error) outcome {
	return outcome{kind: outcomeDead, reason: reason, err: err}
}

// waitLease sends a copy through the first retry queue without counting an
// attempt: another worker holds the customer, and if it dies the copy finds
// the lease expired and drives the customer itself.
func waitLease() outcome { return outcome{kind: outcomeRetry, reason: "leased elsewhere"} }

// classify turns a CRM answer into an outcome:
//   - 2xx and 409 (it exists already): synced;
//   - a permanent refusal (4xx but 408 and 429): rejected, dead-lettered;
//     except 401 and 403, which say our credentials are wrong, not the
//     customer: those count as failures and open the circuit, rather than
//     rejecting a whole import;
//   - anything else (5xx, 408, 429, timeouts, connection errors): retried
//     through the retry queues, failed and dead-lettered once attempts are
//     exhausted.
func classify(res crm.Result, err error, attempts, maxAttempts int) outcome {
	switch {
	case err == nil:
		return outcome{kind: outcomeAck, reason: "synced", attempts: attempts, crmID: res.ID}
	case crm.IsPermanent(err) && !isAuthError(err):
		return outcome{kind: outcomeDead, reason: reasonCRMRejected, err: err, attempts: attempts}
	case attempts >= maxAttempts:
		return outcome{kind: outcomeDead, reason: reasonCRMExhausted, err: err, attempts: attempts}
	default:
		return outcome{kind: outcomeRetry, reason: "crm_transient", err: err, attempts: attempts}
	}
}

// settle is the database side of a CRM call's outcome.
func (o outcome) settle(email string) pgstore.Outcome {
	switch {
	case o.kind == outcomeAck:
		return pgstore.Outcome{Email: email, State: pgstore.StateSynced, CRMID: o.crmID}
	case o.kind == outcomeDead && o.reason == reasonCRMRejected:
		return pgstore.Outcome{Email: email, State: pgstore.StateRejected, Error: errText(o.err)}
	case o.kind == outcomeDead:
		return pgstore.Outcome{Email: email, State: pgstore.StateFailed, Error: errText(o.err)}
	default:
		return pgstore.Outcome{Email: email, State: pgstore.StatePending, Error: errText(o.err)}
	}
}

// errText is an error as Postgres and message headers can take it: valid
// UTF-8 (a CRM's answer may be anything), no NUL, at most 1 KiB.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return truncate(err.Error(), 1024)
}

// gate holds every CRM call of the process while the CRM has asked us to
// slow down (429 with Retry-After), not only the call that was told.
type gate struct {
	mu    sync.Mutex
	until time.Time
}

func (g *gate) close(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := time.Now().Add(d); t.After(g.until) {
		g.until = t
	}
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	d := time.Until(g.until)
	g.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// newBreaker opens the CRM circuit after CircuitFailures transient failures in
// a row: calls stop, deliveries wait in the queue, and no attempt is burned.
// After CircuitOpen one call probes; its success closes the circuit. A
// permanent refusal or a 429 is the CRM answering, not failing.
func newBreaker(cfg Config, logger *slog.Logger) *gobreaker.CircuitBreaker[crm.Result] {
	return gobreaker.NewCircuitBreaker[crm.Result](gobreaker.Settings{
		Name:        "crm",
		MaxRequests: 1,
		Timeout:     cfg.CircuitOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.CircuitFailures) }, //nolint:gosec // validated positive
		IsSuccessful: func(err error) bool {
			return err == nil || (crm.IsPermanent(err) && !isAuthError(err)) || isRateLimited(err)
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				logger.Warn("CRM circuit open: holding deliveries until a probe succeeds", "from", from.String(), "probe_in", cfg.CircuitOpen.String())
			case gobreaker.StateHalfOpen:
				logger.Info("CRM circuit half-open: probing")
			case gobreaker.StateClosed:
				logger.Info("CRM circuit closed: calls resume")
			}
		},
	})
}

// isRateLimited reports a 429: the CRM is up and asks us to slow down.
func isRateLimited(err error) bool {
	se, ok := errors.AsType[*crm.StatusError](err)
	return ok && se.Status == http.StatusTooManyRequests
}

// isAuthError reports a 401 or 403: the CRM refuses us, not the customer.
func isAuthError(err error) bool {
	se, ok := errors.AsType[*crm.StatusError](err)
	return ok && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)
}
