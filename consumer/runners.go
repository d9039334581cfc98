package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// runners run batches side by side, up to Prefetch/BatchSize of them, so
// that one batch's CRM calls overlap the next one's database work. Each
// runner is its own lease owner: a runner may re-take a lease it holds (one
// whose answer was lost), never one another runner holds. Finished batches
// are acked through the acker, in delivery order.
type runners struct {
	batches chan taken
	failed  chan error
	ctx     context.Context // cancelled when a runner fails or stop's grace ends
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	acks    acker
}

// taken is a batch of deliveries and its place in the acker's line.
type taken struct {
	deliveries []amqp.Delivery
	ack        *ackBatch
}

// startRunners starts n runners named name#0 to name#n-1 that handle each
// batch they are given under work, then ack it and tell acked how many
// deliveries it held.
func startRunners(work context.Context, n int, name string, handle func(ctx context.Context, ds []amqp.Delivery, owner string) error, acked func(n int)) *runners {
	r := &runners{batches: make(chan taken), failed: make(chan error, n)}
	r.ctx, r.cancel = context.WithCancel(work)
	for i := range n {
		owner := fmt.Sprintf("%s#%d", name, i)
		r.wg.Go(func() {
			for b := range r.batches {
				err := handle(r.ctx, b.deliveries, owner)
				if err == nil {
					err = r.acks.done(b.ack)
				}
				if err == nil {
					acked(len(b.deliveries))
				}
				if err != nil {
					r.failed <- err
					r.cancel()
					return
				}
			}
		})
	}
	return r
}

// submit hands ds to the first free runner. It returns the error of a
// runner that failed meanwhile (unacked deliveries go back to the queue
// when the channel closes; the invariants make their redelivery safe). When
// ctx ends first, with every runner busy, ds is handed back unprocessed.
func (r *runners) submit(ctx context.Context, ds []amqp.Delivery) error {
	select {
	case r.batches <- taken{deliveries: ds, ack: r.acks.add(ds)}:
		return nil
	case err := <-r.failed:
		return err
	case <-ctx.Done():
		return nil
	}
}

// failure is the error of a runner that failed, if any did.
func (r *runners) failure() error {
	select {
	case err := <-r.failed:
		return err
	default:
		return nil
	}
}

// stopped is closed once a runner failed or stop's grace ended.
func (r *runners) stopped() <-chan struct{} { return r.ctx.Done() }

// stop takes no more batches and waits for the runners to finish theirs.
// A grace above zero bounds that wait: the batches in hand may finish their
// CRM calls and write what they learnt (only their acks died with a lost
// channel), but they do not wait out a CRM or Postgres outage before a
// reconnect. Without grace they finish within the work context's bound.
func (r *runners) stop(grace time.Duration) {
	if grace > 0 {
		t := time.AfterFunc(grace, r.cancel)
		defer t.Stop()
	}
	close(r.batches)
	r.wg.Wait()
	r.cancel()
}

// acker acks finished batches with one multiple ack each, in delivery order:
// batches run side by side and finish in any order, and a multiple ack on a
// batch's last delivery would also ack an earlier batch still in work. So a
// batch is acked only once every batch taken before it is done, which costs
// the broker one ack per batch rather than one per message.
type acker struct {
	mu      sync.Mutex
	pending []*ackBatch // in the order the batches were taken
}

type ackBatch struct {
	last amqp.Delivery
	done bool
}

// add registers a batch as it is taken off the channel.
func (a *acker) add(batch []amqp.Delivery) *ackBatch {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &ackBatch{last: batch[len(batch)-1]}
	a.pending = append(a.pending, b)
	return b
}

// done marks b finished and acks every finished batch at the head of the line.
func (a *acker) done(b *ackBatch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	b.done = true
	var last *ackBatch
	for len(a.pending) > 0 && a.pending[0].done {
		last = a.pending[0]
		a.pending = a.pending[1:]
	}
	if last == nil {
		return nil
	}
	if err := last.last.Ack(true); err != nil {
		return fmt.Errorf("ack deliveries up to %d: %w", last.last.DeliveryTag, err)
	}
	return nil
}
