package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
)

// callCRM calls the CRM for every leased customer, at most CRMConcurrency at
// once, through the circuit breaker, and records each outcome. It returns the
// items it did not call: the circuit was open (or probing), the CRM asked to
// slow down, or the leases taken at leasedAt would not outlast the call.
// Items cut off by ctx are left without an outcome.
func (w *worker) callCRM(ctx context.Context, calls []*item, claims map[string]pgstore.Claim, leasedAt time.Time) []*item {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		deferred []*item
	)
	// Call only while the lease outlasts the call with a margin: a tenth of
	// the slack between them, at most a second (--lease > --crm-timeout).
	margin := min(time.Second, (w.cfg.Lease-w.cfg.CRMTimeout)/10)
	callBy := w.cfg.Lease - w.cfg.CRMTimeout - margin
	deferItem := func(it *item) {
		mu.Lock()
		deferred = append(deferred, it)
		mu.Unlock()
	}
	for _, it := range calls {
		select {
		case w.crmSlots <- struct{}{}:
		case <-ctx.Done():
			// Stopped while waiting for a slot: the rest are not called.
			wg.Wait()
			return deferred
		}
		wg.Go(func() {
			defer func() { <-w.crmSlots }()
			// Waiting for a slot or out a Retry-After may have eaten the
			// lease: call only while it outlasts the call, so that nobody
			// else can have taken it meanwhile.
			if err := w.gate.wait(ctx); err != nil || ctx.Err() != nil {
				return
			}
			if time.Since(leasedAt) > callBy {
				deferItem(it)
				return
			}
			cl := claims[it.c.Email]
			res, err := w.breaker.Execute(func() (crm.Result, error) { return w.createCustomer(ctx, cl.Customer, &it.called) })
			switch {
			case ctx.Err() != nil:
				// cut off: no outcome; the batch keeps or releases the lease
			case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests), isRateLimited(err):
				deferItem(it)
			default:
				it.out = classify(res, err, cl.Attempts, w.cfg.MaxAttempts)
			}
		})
	}
	wg.Wait()
	return deferred
}

// createCustomer makes one CRM call, and sets called once its request is
// written; a Retry-After in the answer closes the gate every call of the
// process waits on (callCRM), not only this one.
//
// It sends the customer as stored (its first insert), not the delivery's
// copy, so that Postgres and the CRM hold the same data whichever row of an
// export drives the creation.
func (w *worker) createCustomer(ctx context.Context, c customer.Customer, called *atomic.Bool) (crm.Result, error) {
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { called.Store(true) }})
	started := time.Now()
	res, err := w.crm.CreateCustomer(ctx, customer.IdempotencyKey(c.Email), crm.Customer{
		Email: c.Email, Name: c.Name, FirstName: c.FirstName, LastName: c.LastName, Phone: c.Phone, Attributes: c.Attributes,
	})
	w.metrics.crmCall(res, err, time.Since(started))
	if d, ok := crm.RetryAfter(err); ok {
		w.gate.close(d)
	}
	return res, err
}

// waitCircuit holds the batch while the CRM circuit is open. The breaker
// moves to half-open on its own once the open period is over, and then lets
// one call through as a probe.
func (w *worker) waitCircuit(ctx context.Context) error {
	for w.breaker.State() == gobreaker.StateOpen {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the CRM circuit to close: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
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
