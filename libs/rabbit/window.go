package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
)

// WindowConfig says how a ConfirmWindow publishes. T is what the caller
// keeps with each message (for the producer: the row and where it ends).
type WindowConfig[T any] struct {
	// Open returns a new confirm-mode publisher: once at the start and
	// again after a channel or connection is lost. Required.
	Open func(context.Context) (*Publisher, error)
	// Exchange and Key are where every message goes.
	Exchange, Key string
	// Size bounds the messages sent and not yet confirmed. Default 256.
	Size int
	// Retries is how many times a message the broker nacked is sent again
	// before Send or Flush fails with ErrNacked. Default 0.
	Retries int
	// Confirmed is called with a message's tag once the broker confirmed
	// it, in the order the messages were sent. Optional.
	Confirmed func(T)
	// Logger tells of resends. Default: discarded.
	Logger *slog.Logger
}

// maxReopens bounds the new channels tried in a row after a loss.
const maxReopens = 10

// ConfirmWindow publishes on one channel with at most Size messages
// unconfirmed, waiting for the oldest when the window is full. A message
// counts only once the broker confirmed it. One the broker nacked is sent
// again; when the channel or the connection is lost, the broker's answers for
// every unconfirmed message are lost with it, so all of them are sent again
// on a new channel (some may be stored twice: consumers treat that as a
// duplicate).
//
// A ConfirmWindow belongs to one goroutine.
type ConfirmWindow[T any] struct {
	cfg     WindowConfig[T]
	pub     *Publisher
	pending []windowed[T]
}

type windowed[T any] struct {
	msg   amqp.Publishing
	tag   T
	dc    *amqp.DeferredConfirmation
	tries int
}

// NewConfirmWindow opens the first channel.
func NewConfirmWindow[T any](ctx context.Context, cfg WindowConfig[T]) (*ConfirmWindow[T], error) {
	if cfg.Size <= 0 {
		cfg.Size = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pub, err := cfg.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &ConfirmWindow[T]{cfg: cfg, pub: pub, pending: make([]windowed[T], 0, cfg.Size)}, nil
}

// Send publishes msg, first waiting for confirms while the window is full.
func (w *ConfirmWindow[T]) Send(ctx context.Context, msg amqp.Publishing, tag T) error {
	for len(w.pending) >= w.cfg.Size {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	return w.send(ctx, windowed[T]{msg: msg, tag: tag})
}

// Flush waits until every message sent is confirmed.
func (w *ConfirmWindow[T]) Flush(ctx context.Context) error {
	for len(w.pending) > 0 {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Unconfirmed is the number of messages sent and not yet confirmed.
func (w *ConfirmWindow[T]) Unconfirmed() int { return len(w.pending) }

// Close closes the current channel; unconfirmed messages are abandoned.
func (w *ConfirmWindow[T]) Close() error { return w.pub.Close() }

func (w *ConfirmWindow[T]) send(ctx context.Context, m windowed[T]) error {
	dc, err := w.pub.Publish(ctx, w.cfg.Exchange, w.cfg.Key, m.msg)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("publish message %s: %w", m.msg.MessageId, err)
		}
		// A failed write means the connection is going, even before the
		// client has noticed: treat it as lost.
		w.pending = append(w.pending, m)
		return w.resend(ctx, err)
	}
	m.dc = dc
	w.pending = append(w.pending, m)
	return nil
}

// settleOldest waits for the broker's answer on the oldest message.
func (w *ConfirmWindow[T]) settleOldest(ctx context.Context) error {
	m := w.pending[0]
	err := w.pub.Wait(ctx, m.dc, m.msg.MessageId)
	switch {
	case err == nil:
		w.pending = w.pending[1:]
		if w.cfg.Confirmed != nil {
			w.cfg.Confirmed(m.tag)
		}
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("publish message %s: %w", m.msg.MessageId, context.Cause(ctx))
	case w.pub.Channel().IsClosed():
		return w.resend(ctx, err)
	case errors.Is(err, ErrNacked) && m.tries < w.cfg.Retries:
		w.pending = w.pending[1:]
		m.tries++
		w.cfg.Logger.Warn("broker refused a message; sending it again", "message_id", m.msg.MessageId, "try", m.tries)
		return w.send(ctx, m)
	default:
		return fmt.Errorf("publish message %s: %w", m.msg.MessageId, err)
	}
}

// resend moves every unconfirmed message to a new channel.
func (w *ConfirmWindow[T]) resend(ctx context.Context, cause error) error {
	all := slices.Clone(w.pending)
	w.cfg.Logger.Warn("publishing channel lost; sending unconfirmed messages again on a new one", "messages", len(all), "error", cause)
	for tries := 1; ; tries++ {
		if tries > maxReopens {
			return fmt.Errorf("publish: %d new channels failed in a row: %w", tries-1, cause)
		}
		_ = w.pub.Close()
		np, err := w.cfg.Open(ctx)
		if err != nil {
			return fmt.Errorf("%w (lost with %d unconfirmed messages: %w)", err, len(all), cause)
		}
		w.pub = np
		w.pending = w.pending[:0]
		sent := true
		for _, m := range all {
			dc, err := w.pub.Publish(ctx, w.cfg.Exchange, w.cfg.Key, m.msg)
			if err != nil {
				sent, cause = false, err
				break
			}
			m.dc = dc
			w.pending = append(w.pending, m)
		}
		if sent {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}
