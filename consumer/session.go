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
	closed := closeReason(conn.NotifyClose(make(chan *amqp.Error, 1)), ch.NotifyClose(make(chan *amqp.Error, 1)))
	return w.serve(ctx, pub, ch, closed, amqpURL)
}

// serve consumes on ch until ctx ends or the channel or a runner fails.
// In-flight work outlives ctx by at most the shutdown timeout.
func (w *worker) serve(ctx context.Context, pub *rabbit.Publisher, ch *amqp.Channel, closed func() error, amqpURL string) (connected bool, err error) {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.ShutdownTimeout, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stopAfter()

	rs := startRunners(work, max(w.cfg.Prefetch/w.cfg.BatchSize, 1), w.cfg.Name, func(work context.Context, ds []amqp.Delivery, owner string) error {
		return w.handle(work, ctx.Done(), pub, ds, owner)
	}, w.done)
	defer func() {
		grace := time.Duration(0)
		if ctx.Err() == nil {
			grace = w.cfg.CRMTimeout + 5*time.Second // not a shutdown: the connection or a runner failed
		}
		rs.stop(grace)
	}()
	w.metrics.setConsuming(true)
	defer w.metrics.setConsuming(false)
	for round := 1; ; round++ {
		prefetch := w.prefetch()
		if err := ch.Qos(prefetch, 0, false); err != nil {
			return connected, fmt.Errorf("set prefetch: %w", err)
		}
		// A tag of its own for each consumer of the channel: RabbitMQ 3.10
		// closes a channel that gets a late delivery of a cancelled quorum
		// queue consumer whose tag was taken again.
		tag := w.cfg.Name
		if round > 1 {
			tag = fmt.Sprintf("%s.%d", w.cfg.Name, round)
		}
		deliveries, err := ch.Consume(w.top.Queue(), tag, false, false, false, false, nil)
		if err != nil {
			return connected, fmt.Errorf("consume %s: %w", w.top.Queue(), err)
		}
		connected = true
		w.logger.Info("consuming", "queue", w.top.Queue(), "prefetch", prefetch, "amqp", rabbit.Redact(amqpURL))
		err = w.loop(ctx, deliveries, rs, prefetch, closed, func() { _ = ch.Cancel(tag, false) })
		if !errors.Is(err, errGrow) {
			return true, err
		}
	}
}

// errGrow ends a consumer that took one delivery at a time (see
// worker.afterLoss) once the suspects are through: it is cancelled and
// drained, and consuming starts again at the full prefetch.
var errGrow = errors.New("back to the full prefetch")

// loop takes batches off deliveries and hands them to the runners until
// ctx ends (then it cancels the consumer and returns nil), the deliveries
// end (the connection's or channel's error, from closed) or a runner
// fails. Taking one delivery at a time, it returns errGrow once the
// suspects are through and the consumer is cancelled and drained.
func (w *worker) loop(ctx context.Context, deliveries <-chan amqp.Delivery, rs *runners, prefetch int, closed func() error, cancel func()) error {
	growing := false
	for {
		if !growing && w.prefetch() > prefetch {
			// No delivery is lost: those already sent come before the
			// channel closes, and are handled as any other.
			cancel()
			growing = true
		}
		batch, err := collect(ctx, rs.stopped(), deliveries, min(w.cfg.BatchSize, prefetch), w.cfg.BatchWait)
		if len(batch) > 0 {
			w.inHand.Add(int64(len(batch)))
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
			if growing && ctx.Err() == nil {
				return errGrow
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
