package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// worker is one consumer process's loop: connect, declare, take batches of
// deliveries, and turn each into a durable outcome before acking it.
//
// The invariants it keeps (docs/ARCHITECTURE.md):
//   - A delivery is acked only after its outcome is durable: the customer is
//     in Postgres and synced, or rejected/failed with the dead letter
//     confirmed by the broker, or the retry copy is confirmed.
//   - The CRM is called only for a pending customer, only under this
//     worker's lease, always with the customer's idempotency key.
//
// The rooms: session.go (a connection's life), runners.go (batches side by
// side, acked in order), batch.go (a batch's steps), crmcall.go (the call,
// the circuit), outcome.go (what a delivery comes to),
// deadletter.go (the messages a given-up or retried delivery becomes).
type worker struct {
	cfg    Config
	logger *slog.Logger
	store  *pgstore.Store
	crm    crm.CRM
	top    rabbit.Topology
	// dialer goes round the broker URLs; made by the first dial.
	dialer  *rabbit.Dialer
	breaker *gobreaker.CircuitBreaker[[]crm.Answer]
	// crashAt, set only by fault-injection tests, may stop a batch dead at
	// a named point by returning an error.
	crashAt func(point string) error
	// crmSlots bounds the CRM calls in flight across all batches.
	crmSlots chan struct{}
	// metrics feeds /metrics and /readyz; nil-safe.
	metrics *metrics
	// inHand counts the deliveries taken and not yet acked.
	inHand atomic.Int64
	// suspects, when not zero, counts the deliveries still to get through
	// one at a time after the connection was lost with deliveries in
	// flight (afterLoss).
	suspects atomic.Int64
}

func newWorker(cfg Config, logger *slog.Logger, store *pgstore.Store, client crm.CRM) *worker {
	w := &worker{
		cfg: cfg, logger: logger, store: store, crm: client, top: cfg.topology(),
		metrics: newMetrics(), crmSlots: make(chan struct{}, cfg.CRMConcurrency),
	}
	w.breaker = newBreaker(cfg, logger)
	w.metrics.watchCircuit(func() bool { return w.breaker.State() == gobreaker.StateOpen })
	return w
}

// errFatal marks errors that reconnecting cannot cure.
var errFatal = errors.New("fatal")

// run keeps a session going until ctx is done. The first connection must
// succeed within the connect timeout, a deadline no dial or wait outlasts,
// and a broker that refuses it for good (credentials, vhost) ends the run at
// once; after that, lost connections are retried for ever with capped
// exponential backoff, going round the broker URLs.
func (w *worker) run(ctx context.Context) error {
	// The progress line goes on while in-flight work finishes after a stop.
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	defer wg.Wait()
	defer stopProgress()
	wg.Go(func() { logProgress(pctx, &w.metrics.progress, w.cfg.LogEvery, w.logger) })

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = w.cfg.ReconnectMax
	firstDeadline := time.Now().Add(w.cfg.ConnectTimeout)
	connectedOnce := false
	for {
		var dialBy time.Time
		if !connectedOnce {
			dialBy = firstDeadline
		}
		connected, err := w.session(ctx, dialBy)
		connectedOnce = connectedOnce || connected
		if ctx.Err() != nil {
			w.logger.Info("stopped")
			return nil //nolint:nilerr // asked to stop: the session's error is the stop itself
		}
		if errors.Is(err, errFatal) || (!connectedOnce && rabbit.IsPermanent(err)) {
			return err
		}
		if !connectedOnce && !time.Now().Before(firstDeadline) {
			return fmt.Errorf("%w (gave up after --connect-timeout %s)", err, w.cfg.ConnectTimeout)
		}
		if connected {
			bo.Reset()
			w.afterLoss(err)
		}
		wait := bo.NextBackOff()
		if !connectedOnce {
			wait = min(wait, time.Until(firstDeadline))
		}
		w.logger.Warn("RabbitMQ session ended; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// afterLoss handles a session that ended with err, not by a stop. A
// connection can be lost to a message: one whose frames the client cannot
// read (headers the broker took but sends over the negotiated frame_max),
// or one that crashes the process. Every delivery in flight then goes back
// with its delivery count raised, and at the delivery limit the broker
// dead-letters the culprit and every good message in flight beside it.
//
// So after a loss with deliveries in flight, or a frame the client refused,
// the worker takes one delivery at a time (prefetch 1) until as many as
// could have been in flight (the prefetch) are acked. The culprit, alone in
// flight whenever it is delivered, raises only its own count and reaches
// the delivery limit alone; then the prefetch grows back. Returned messages
// may come back in another order (a quorum queue serves them after those
// returned before), so no shorter rule is safe.
func (w *worker) afterLoss(err error) {
	inHand := w.inHand.Swap(0)
	amqpErr, isAMQP := errors.AsType[*amqp.Error](err)
	frameErr := isAMQP && (amqpErr.Code == amqp.FrameError || amqpErr.Code == amqp.SyntaxError || amqpErr.Code == amqp.UnexpectedFrame)
	if (inHand == 0 && !frameErr) || w.suspects.Load() > 0 {
		return // nothing in flight; or one at a time already, and the culprit is what was in flight
	}
	w.suspects.Store(int64(w.cfg.Prefetch))
	w.logger.Warn("connection lost with deliveries in flight; taking them one at a time, so that a message that breaks the connection costs only itself",
		"in_hand", inHand, "one_at_a_time", w.cfg.Prefetch)
}

// prefetch is what the next consumer asks for: 1 while suspects are left.
func (w *worker) prefetch() int {
	if w.suspects.Load() > 0 {
		return 1
	}
	return w.cfg.Prefetch
}

// done counts n deliveries acked: out of hand, and through as suspects.
func (w *worker) done(n int) {
	w.inHand.Add(-int64(n))
	for {
		s := w.suspects.Load()
		if s == 0 {
			return
		}
		if w.suspects.CompareAndSwap(s, max(s-int64(n), 0)) {
			if s <= int64(n) {
				w.logger.Info("the deliveries that were in flight are through; back to the full prefetch", "prefetch", w.cfg.Prefetch)
			}
			return
		}
	}
}

// withDB runs op until it succeeds, retrying with backoff while Postgres is
// unreachable: deliveries are held, not requeued, so no delivery count and no
// CRM attempt is burned by a database outage. An error Postgres gives for
// the data itself is returned at once.
func withDB[T any](ctx context.Context, w *worker, what string, op func(context.Context) (T, error)) (T, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = w.cfg.ReconnectMax
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op(ctx)
		if err != nil && (pgstore.IsDataError(err) || ctx.Err() != nil) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		w.logger.Warn("PostgreSQL unavailable; holding the batch and retrying", "op", what, "error", err, "retry_in", d.Round(time.Millisecond).String())
	}))
}

// crashPoint lets fault-injection tests stop a batch dead at a named point,
// as a killed process would: nothing released, nothing acked.
func (w *worker) crashPoint(point string) error {
	if w.crashAt == nil {
		return nil
	}
	return w.crashAt(point)
}
