// Package deadletter reads and replays the dead-letter queue: the messages
// the consumers (or the broker itself) gave up on, with headers saying why.
// `consumer replay` and the web service share it.
//
// Both walk the messages present when they start, one at a time: each is
// taken, published again (to the work queue when replayed, to the back of
// the dead-letter queue otherwise), and acked only once the broker has
// confirmed the copy. A crash in between leaves a copy twice, never none.
// Reading leaves the queue as it was, in the same order, without counting a
// delivery against any message (a quorum queue with a delivery limit would
// drop a message read and put back too often).
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/rabbit"
)

// The headers the consumer stamps on a dead letter (and on a retry copy),
// the one vocabulary its writers and readers share.
const (
	HeaderReason         = "x-death-reason"     // why: invalid_message, crm_rejected...
	HeaderLastError      = "x-last-error"       // the last error, at most 1 KiB
	HeaderAttempts       = "x-attempts"         // CRM attempts made
	HeaderDeadLetteredAt = "x-dead-lettered-at" // RFC 3339, UTC
	HeaderConsumer       = "x-consumer"         // the consumer that gave up
	HeaderRetryAttempt   = "x-retry-attempt"    // on a retry copy: the attempt it follows
	headerBrokerDeath    = "x-death"            // the broker's own, when it dead-lettered
)

// headers a dead letter carries that a replayed message must not.
var headers = []string{headerBrokerDeath, HeaderReason, HeaderLastError, HeaderAttempts, HeaderDeadLetteredAt, HeaderConsumer, HeaderRetryAttempt, "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason"}

// Reason is why a message was dead-lettered: the consumer's x-death-reason,
// or the broker's own reason (delivery_limit, expired...), or "unknown".
func Reason(h amqp.Table) string {
	if r, ok := h[HeaderReason].(string); ok {
		return r
	}
	if deaths, ok := h[headerBrokerDeath].([]any); ok && len(deaths) > 0 {
		if d, ok := deaths[0].(amqp.Table); ok {
			if r, ok := d["reason"].(string); ok {
				return r
			}
		}
	}
	return "unknown"
}

// Resetter puts customers back to pending (pgstore.Store does).
type Resetter interface {
	Reset(ctx context.Context, emails []string) (int64, error)
}

// ReplayOptions selects what Replay moves.
type ReplayOptions struct {
	// Reason, when set, replays only dead letters with this reason.
	Reason string
	// Limit, when positive, replays at most this many.
	Limit int
}

// ReplayResult says what Replay did.
type ReplayResult struct {
	// Replayed dead letters went back to the work queue, by reason.
	Replayed int            `json:"replayed"`
	ByReason map[string]int `json:"by_reason"`
	// Kept were read and put back: not selected.
	Kept int `json:"kept"`
	// Left is how many stay in the dead-letter queue.
	Left int `json:"left"`
	// Queue is the work queue they went to; DeadQueue the one they came from.
	Queue     string `json:"queue"`
	DeadQueue string `json:"dead_queue"`
}

// Replay moves the dead letters present when it starts back to the work
// queue (those with opts.Reason only, at most opts.Limit). The customer of
// each replayed message goes back to pending with its attempts cleared,
// before the message is published, so the consumers drive it again.
func Replay(ctx context.Context, conn *amqp.Connection, top rabbit.Topology, store Resetter, opts ReplayOptions) (ReplayResult, error) {
	res := ReplayResult{ByReason: map[string]int{}, Queue: top.Queue(), DeadQueue: top.DeadQueue()}
	total, err := walk(ctx, conn, top, func(w *walker) error {
		if opts.Limit > 0 && res.Replayed >= opts.Limit {
			return errStop
		}
		d, reason, ok, err := w.next()
		if err != nil || !ok {
			return err
		}
		if opts.Reason != "" && reason != opts.Reason {
			res.Kept++
			return w.keep(ctx, d)
		}
		msg := Copy(d)
		for _, h := range headers {
			delete(msg.Headers, h)
		}
		msg.Headers["x-replayed-at"] = time.Now().UTC().Format(time.RFC3339)
		msg.Headers["x-replayed-reason"] = reason
		msg.Exchange, msg.Key = top.Exchange(), rabbit.ImportKey
		if c, err := customer.Decode(d.Body); err == nil {
			if _, err := store.Reset(ctx, []string{c.Email}); err != nil {
				return err
			}
		}
		if err := w.move(ctx, d, msg); err != nil {
			return err
		}
		res.Replayed++
		res.ByReason[reason]++
		return nil
	})
	res.Left = total - res.Replayed
	return res, err
}

// Letter is one dead letter as Inspect shows it.
type Letter struct {
	MessageID   string         `json:"message_id"`
	Reason      string         `json:"reason"`
	Headers     map[string]any `json:"headers"`
	Body        string         `json:"body"`
	ContentType string         `json:"content_type,omitempty"`
	Timestamp   time.Time      `json:"timestamp,omitzero"`
}

// InspectOptions bounds what Inspect reads.
type InspectOptions struct {
	// Reason, when set, lists only dead letters with this reason (the
	// counts cover every reason).
	Reason string
	// Scan is how many messages are read at most, from the head of the
	// queue. Default 10,000.
	Scan int
	// Sample is how many of them are returned whole. Default 20.
	Sample int
}

// Report is what the dead-letter queue holds.
type Report struct {
	// Total is the number of messages in the queue.
	Total int `json:"total"`
	// Scanned is how many of them were read; ByReason counts those.
	Scanned  int            `json:"scanned"`
	ByReason map[string]int `json:"by_reason"`
	// First lists the first messages read (with the reason asked for).
	First []Letter `json:"first"`
}

// Inspect counts the dead letters by reason and returns the first ones with
// their headers, leaving every message in the queue, in its order.
func Inspect(ctx context.Context, conn *amqp.Connection, top rabbit.Topology, opts InspectOptions) (Report, error) {
	if opts.Scan <= 0 {
		opts.Scan = 10_000
	}
	if opts.Sample <= 0 {
		opts.Sample = 20
	}
	rep := Report{ByReason: map[string]int{}, First: []Letter{}}
	total, err := walk(ctx, conn, top, func(w *walker) error {
		if rep.Scanned >= opts.Scan {
			return errStop
		}
		d, reason, ok, err := w.next()
		if err != nil || !ok {
			return err
		}
		rep.Scanned++
		rep.ByReason[reason]++
		if len(rep.First) < opts.Sample && (opts.Reason == "" || opts.Reason == reason) {
			h := make(map[string]any, len(d.Headers))
			maps.Copy(h, d.Headers)
			rep.First = append(rep.First, Letter{
				MessageID: d.MessageId, Reason: reason, Headers: h, Body: string(d.Body),
				ContentType: d.ContentType, Timestamp: d.Timestamp,
			})
		}
		return w.keep(ctx, d)
	})
	rep.Total = total
	return rep, err
}

// errStop ends a walk early, without error.
var errStop = errors.New("stop")

// walker takes the messages of the dead-letter queue one at a time and
// moves them with confirms.
type walker struct {
	top  rabbit.Topology
	ch   *amqp.Channel
	pub  *rabbit.Publisher
	left int // messages present at the start not taken yet
}

// walk calls step for each message present in the dead-letter queue when it
// starts, until step returns errStop or an error, or no message is left. It
// returns the queue's length at the start.
func walk(ctx context.Context, conn *amqp.Connection, top rabbit.Topology, step func(*walker) error) (int, error) {
	pub, err := rabbit.NewPublisher(conn)
	if err != nil {
		return 0, err
	}
	defer pub.Close() //nolint:errcheck // closing the connection closes it too
	if err := top.Declare(pub.Channel()); err != nil {
		return 0, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close() //nolint:errcheck // nothing left to do about it
	q, err := ch.QueueDeclarePassive(top.DeadQueue(), true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", top.DeadQueue(), err)
	}
	w := &walker{top: top, ch: ch, pub: pub, left: q.Messages}
	for w.left > 0 {
		if err := ctx.Err(); err != nil {
			return q.Messages, err
		}
		if err := step(w); err != nil {
			if errors.Is(err, errStop) {
				break
			}
			return q.Messages, err
		}
	}
	return q.Messages, nil
}

// next takes the next message; ok is false when the queue is empty.
func (w *walker) next() (amqp.Delivery, string, bool, error) {
	d, ok, err := w.ch.Get(w.top.DeadQueue(), false)
	if err != nil {
		return amqp.Delivery{}, "", false, fmt.Errorf("read %s: %w", w.top.DeadQueue(), err)
	}
	if !ok {
		w.left = 0
		return amqp.Delivery{}, "", false, nil
	}
	w.left--
	return d, Reason(d.Headers), true, nil
}

// keep moves d unchanged to the back of the dead-letter queue.
func (w *walker) keep(ctx context.Context, d amqp.Delivery) error {
	msg := Copy(d)
	msg.Exchange, msg.Key = w.top.DeadExchange(), rabbit.DeadKey
	return w.move(ctx, d, msg)
}

// move publishes msg, waits for the broker's confirm, then acks d.
func (w *walker) move(ctx context.Context, d amqp.Delivery, msg rabbit.Message) error {
	if err := w.pub.PublishAll(ctx, []rabbit.Message{msg}); err != nil {
		return fmt.Errorf("move dead letter %s: %w (it stays in %s)", d.MessageId, err, w.top.DeadQueue())
	}
	if err := d.Ack(false); err != nil {
		return fmt.Errorf("ack dead letter %s: %w", d.MessageId, err)
	}
	return nil
}

// Copy is a persistent message of what d came with, body byte for byte and
// headers copied, to be given its exchange and key: a dead letter, a retry
// copy or a replay keeps the message as it came.
func Copy(d amqp.Delivery) rabbit.Message {
	msg := rabbit.Message{Publishing: amqp.Publishing{
		Headers: amqp.Table{}, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
		MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body,
	}}
	maps.Copy(msg.Headers, d.Headers)
	return msg
}
