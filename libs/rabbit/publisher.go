package rabbit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNacked means the broker refused to take responsibility for a message (a
// full queue, an internal error): it was not stored and must be published
// again.
var ErrNacked = errors.New("broker nacked the message")

// ErrReturned means a mandatory message reached no queue: the topology is
// missing or was deleted under us.
var ErrReturned = errors.New("broker returned the message as unroutable")

// Publisher publishes on one channel in confirm mode, always mandatory, so
// that a message counts as sent only once the broker has confirmed it and a
// message that reaches no queue is noticed.
type Publisher struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	barrier chan amqp.Return
	done    chan struct{}

	mu       sync.Mutex
	returned map[string][]amqp.Return // by MessageId, until looked at (ids may repeat: a resent row)
	first    *amqp.Return
}

// NewPublisher opens a channel on conn and puts it in confirm mode.
func NewPublisher(conn *amqp.Connection) (*Publisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("put channel in confirm mode: %w", err)
	}
	p := &Publisher{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return)),
		barrier:  ch.NotifyReturn(make(chan amqp.Return)),
		done:     make(chan struct{}),
		returned: map[string][]amqp.Return{},
	}
	// amqp091-go's reader hands a return to each listener in turn, blocking,
	// before it reads the ack that follows it. Receiving on the second,
	// unbuffered channel only after recording the return holds the reader
	// until the record is made, so Wait never sees the ack of a returned
	// message before its return. The client closes both channels when the
	// AMQP channel closes, which ends this goroutine.
	go func() {
		defer close(p.done)
		for r := range p.returns {
			p.mu.Lock()
			p.returned[r.MessageId] = append(p.returned[r.MessageId], r)
			if p.first == nil {
				p.first = &r
			}
			p.mu.Unlock()
			<-p.barrier
		}
	}()
	return p, nil
}

// Channel returns the underlying channel (for declaring the topology).
func (p *Publisher) Channel() *amqp.Channel { return p.ch }

// Publish sends msg as mandatory and returns the confirmation to wait for.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return nil, fmt.Errorf("publish to exchange %q key %q: %w", exchange, key, err)
	}
	return dc, nil
}

// Wait waits for the broker's answer on a message published with Publish: nil
// once it is stored, ErrNacked when refused, ErrReturned when it reached no
// queue.
func (p *Publisher) Wait(ctx context.Context, dc *amqp.DeferredConfirmation, messageID string) error {
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for confirm: %w", err)
	}
	if !acked {
		return ErrNacked
	}
	// A return precedes its ack on the wire and is recorded before the ack
	// is read (see NewPublisher).
	p.mu.Lock()
	rs := p.returned[messageID]
	var r amqp.Return
	returned := len(rs) > 0
	if returned {
		r = rs[0]
		if len(rs) == 1 {
			delete(p.returned, messageID)
		} else {
			p.returned[messageID] = rs[1:]
		}
	}
	p.mu.Unlock()
	if returned {
		return fmt.Errorf("%w: exchange %q key %q: %s", ErrReturned, r.Exchange, r.RoutingKey, r.ReplyText)
	}
	return nil
}

// FirstReturn reports the first unroutable message seen on this channel.
func (p *Publisher) FirstReturn() (amqp.Return, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == nil {
		return amqp.Return{}, false
	}
	return *p.first, true
}

// Message is one message to publish with PublishAll.
type Message struct {
	Exchange, Key string
	amqp.Publishing
}

// PublishAll publishes msgs and waits until the broker has confirmed every one
// of them. Any error means some of them may not be stored; publishing them
// all again is safe for the pipeline's messages.
func (p *Publisher) PublishAll(ctx context.Context, msgs []Message) error {
	dcs := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		dc, err := p.Publish(ctx, m.Exchange, m.Key, m.Publishing)
		if err != nil {
			return err
		}
		dcs[i] = dc
	}
	for i, dc := range dcs {
		if err := p.Wait(ctx, dc, msgs[i].MessageId); err != nil {
			return fmt.Errorf("message %s to %s: %w", msgs[i].MessageId, msgs[i].Exchange, err)
		}
	}
	return nil
}

// Close closes the channel and waits for the returns drain to end.
func (p *Publisher) Close() error {
	err := p.ch.Close()
	<-p.done
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("close publishing channel: %w", err)
	}
	return nil
}
