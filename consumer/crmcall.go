package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
)

// defaultCRMBatchSize is Config.CRMBatchSize by default: see the README's
// performance section for the measurements behind it.
const defaultCRMBatchSize = 100

// callCRM calls the CRM for every leased customer, CRMBatchSize customers per
// request and at most CRMConcurrency requests at once, through the circuit
// breaker, and records each customer's outcome. It returns the items it did
// not call: the circuit was open (or probing), the CRM asked to slow down,
// or the leases taken at leasedAt would not outlast the call (waiting for a
// slot, a turn of the shared rate or out a 429 can eat a lease). Items cut
// off by ctx are left without an outcome.
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
	// No request starts later, not even one a 413 split off.
	sendCtx := crm.WithSendBy(ctx, leasedAt.Add(callBy))
	deferItems := func(its ...*item) {
		mu.Lock()
		deferred = append(deferred, its...)
		mu.Unlock()
	}
	for group := range slices.Chunk(calls, w.cfg.CRMBatchSize) {
		select {
		case w.crmSlots <- struct{}{}:
		case <-ctx.Done():
			// Stopped while waiting for a slot: the rest are not called.
			wg.Wait()
			return deferred
		}
		wg.Go(func() {
			defer func() { <-w.crmSlots }()
			if ctx.Err() != nil {
				return
			}
			if time.Since(leasedAt) > callBy {
				deferItems(group...)
				return
			}
			answers, err := w.breaker.Execute(func() ([]crm.Answer, error) { return w.createCustomers(sendCtx, group, claims) })
			switch {
			case ctx.Err() != nil:
				// cut off: no outcome; the batch keeps or releases the leases
			case notCalled(err):
				deferItems(group...)
			case err != nil:
				for _, it := range group {
					it.out = classify(crm.Result{}, err, claims[it.c.Email].Attempts, w.cfg.MaxAttempts)
				}
			default:
				for i, it := range group {
					if notCalled(answers[i].Err) {
						deferItems(it)
						continue
					}
					it.out = classify(answers[i].Result, answers[i].Err, claims[it.c.Email].Attempts, w.cfg.MaxAttempts)
				}
			}
		})
	}
	wg.Wait()
	return deferred
}

// notCalled reports a request the CRM did not take up: the circuit kept it
// back, the shared rate had no turn for it in time, or the CRM said 429.
// Its customers give back lease and attempt and are called again.
func notCalled(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) ||
		errors.Is(err, crm.ErrNotSent) || isRateLimited(err)
}

// createCustomers sends one CRM request for group, and marks its items
// called once the request is written. The shared rate is waited on, and
// told of a 429, inside the CRM client (crm.Config.Limiter).
//
// It sends each customer as stored (its first insert), not the delivery's
// copy, so that Postgres and the CRM hold the same data whichever row of an
// export drives the creation.
func (w *worker) createCustomers(ctx context.Context, group []*item, claims map[string]pgstore.Claim) ([]crm.Answer, error) {
	reqs := make([]crm.Request, len(group))
	for i, it := range group {
		c := claims[it.c.Email].Customer
		reqs[i] = crm.Request{Key: customer.IdempotencyKey(c.Email), Customer: crm.Customer{
			Email: c.Email, Name: c.Name, FirstName: c.FirstName, LastName: c.LastName, Phone: c.Phone, Attributes: c.Attributes,
		}}
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() {
		for _, it := range group {
			it.called.Store(true)
		}
	}})
	started := time.Now()
	answers, err := w.crm.Create(ctx, reqs)
	took := time.Since(started)
	for i := range group {
		switch {
		case errors.Is(err, crm.ErrNotSent):
			// Not a call: the shared rate kept it back.
		case err != nil:
			w.metrics.crmCall(crm.Result{}, err, took)
		default:
			w.metrics.crmCall(answers[i].Result, answers[i].Err, took)
		}
	}
	return answers, err
}

// waitCircuit holds the batch while the CRM circuit is open. The breaker
// moves to half-open on its own once the open period is over, and then lets
// one call through as a probe. A consumer asked to stop (stopping closed)
// does not wait: nothing is in flight, the batch goes back to the queue.
func (w *worker) waitCircuit(ctx context.Context, stopping <-chan struct{}) error {
	for w.breaker.State() == gobreaker.StateOpen {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the CRM circuit to close: %w", context.Cause(ctx))
		case <-stopping:
			return errors.New("stopped while waiting for the CRM circuit to close")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// newBreaker opens the CRM circuit after CircuitFailures transient failures in
// a row: calls stop, deliveries wait in the queue, and no attempt is burned.
// After CircuitOpen one call probes; its success closes the circuit. A
// permanent refusal or a 429 is the CRM answering, not failing.
func newBreaker(cfg Config, logger *slog.Logger) *gobreaker.CircuitBreaker[[]crm.Answer] {
	return gobreaker.NewCircuitBreaker[[]crm.Answer](gobreaker.Settings{
		Name:        "crm",
		MaxRequests: 1,
		Timeout:     cfg.CircuitOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.CircuitFailures) }, //nolint:gosec // validated positive
		IsSuccessful: func(err error) bool {
			return err == nil || (crm.IsPermanent(err) && !isAuthError(err)) || isRateLimited(err)
		},
		IsExcluded: func(err error) bool {
			// Not the CRM's doing: our shutdown, or a request the shared
			// rate kept back.
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, crm.ErrNotSent)
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
