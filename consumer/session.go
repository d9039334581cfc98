package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/rabbit"
)

// session is one connection's life: dial, declare, consume, loop. connected
// reports whether it got as far as consuming. A non-zero dialBy is a
// deadline for the dial.
func (w *worker) session(ctx context.Context, dialBy time.Time) (connected bool, err error) {
	conn, amqpURL, err := w.dial(ctx, dialBy)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	pub, err := rabbit.NewPublisher(conn)
	if err != nil {
		return false, err
	}
	defer pub.Close() //nolint:errcheck // closing the connection closes it too
	if err := w.top.Declare(pub.Channel()); err != nil {
		if amqpErr, ok := errors.AsType[*amqp.Error](err); ok && amqpErr.Code == amqp.PreconditionFailed {
			return false, fmt.Errorf("%w: %w", errFatal, err)
		}
		return false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open consuming channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(w.top.Queue(), w.cfg.Name, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", w.top.Queue(), err)
	}
	closed := closeReason(conn.NotifyClose(make(chan *amqp.Error, 1)), ch.NotifyClose(make(chan *amqp.Error, 1)))
	w.logger.Info("consuming", "queue", w.top.Queue(), "prefetch", w.cfg.Prefetch, "amqp", rabbit.Redact(amqpURL))
	w.metrics.setConsuming(true)
	defer w.metrics.setConsuming(false)

	// In-flight work outlives the signal by at most the shutdown timeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.ShutdownTimeout, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stopAfter()

	rs := startRunners(work, max(w.cfg.Prefetch/w.cfg.BatchSize, 1), w.cfg.Name, func(ctx context.Context, ds []amqp.Delivery, owner string) error {
		return w.handle(ctx, pub, ds, owner)
	})
	defer func() {
		grace := time.Duration(0)
		if ctx.Err() == nil {
			grace = w.cfg.CRMTimeout + 5*time.Second // not a shutdown: the connection or a runner failed
		}
		rs.stop(grace)
	}()
	return true, w.loop(ctx, deliveries, rs, closed, func() { _ = ch.Cancel(w.cfg.Name, false) })
}

// loop takes batches off deliveries and hands them to the runners until
// ctx ends (then it cancels the consumer and returns nil), the deliveries
// end (the connection's or channel's error, from closed) or a runner
// fails.
func (w *worker) loop(ctx context.Context, deliveries <-chan amqp.Delivery, rs *runners, closed func() error, cancel func()) error {
	for {
		batch, err := collect(ctx, rs.stopped(), deliveries, w.cfg.BatchSize, w.cfg.BatchWait)
		if len(batch) > 0 {
			if herr := rs.submit(ctx, batch); herr != nil {
				return herr
			}
		}
		if herr := rs.failure(); herr != nil {
			return herr
		}
		if err != nil {
			if cerr := closed(); cerr != nil {
				return cerr
			}
			return err
		}
		if ctx.Err() != nil {
			// Stop taking deliveries; the runners finish what they hold
			// (session's deferred stop), and what is unacked goes back.
			cancel()
			return nil //nolint:nilerr // asked to stop: ctx's error is the stop itself
		}
	}
}

// closeReason returns what says why deliveries ended. The connection's
// error, when it is what closed, is already there; the channel alone may
// have closed (a consumer timeout, the queue deleted), and then there is
// none to wait for.
func closeReason(conn, ch <-chan *amqp.Error) func() error {
	return func() error {
		select {
		case cerr, ok := <-conn:
			if ok && cerr != nil {
				return fmt.Errorf("connection closed: %w", cerr)
			}
		case cerr, ok := <-ch:
			if ok && cerr != nil {
				return fmt.Errorf("consuming channel closed: %w", cerr)
			}
		default:
		}
		return nil
	}
}

var errDeliveriesClosed = errors.New("delivery channel closed")

// collect takes up to limit deliveries: it waits for the first as long as
// needed, then up to wait for the rest. It gives up early when ctx is done or
// stop closes (a batch runner failed).
func collect(ctx context.Context, stop <-chan struct{}, deliveries <-chan amqp.Delivery, limit int, wait time.Duration) ([]amqp.Delivery, error) {
	var batch []amqp.Delivery
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, errDeliveriesClosed
		}
		batch = append(batch, d)
	case <-ctx.Done():
		return nil, nil
	case <-stop:
		return nil, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(batch) < limit {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return batch, errDeliveriesClosed
			}
			batch = append(batch, d)
		case <-timer.C:
			return batch, nil
		case <-ctx.Done():
			return batch, nil
		case <-stop:
			return batch, nil
		}
	}
	return batch, nil
}

// dial connects to the first broker of --amqp-url that answers, starting
// after the one it used last, so that a lost node sends the consumer round
// the list rather than back to it.
func (w *worker) dial(ctx context.Context, by time.Time) (*amqp.Connection, string, error) {
	if w.dialer == nil {
		d, err := rabbit.NewDialer(w.cfg.AMQPURL, "consumer "+w.cfg.Name)
		if err != nil {
			return nil, "", err
		}
		w.dialer = d
	}
	if !by.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, by)
		defer cancel()
	}
	return w.dialer.Dial(ctx)
}
