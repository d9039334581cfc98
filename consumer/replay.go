package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// Headers a dead letter carries that a replayed message must not.
var deadHeaders = []string{"x-death", "x-death-reason", "x-last-error", "x-attempts", "x-dead-lettered-at", "x-consumer", "x-retry-attempt", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason"}

// deathReason is why a message was dead-lettered: the consumer's
// x-death-reason, or the broker's own reason (delivery_limit, expired...).
func deathReason(h amqp.Table) string {
	if r, ok := h["x-death-reason"].(string); ok {
		return r
	}
	if deaths, ok := h["x-death"].([]any); ok && len(deaths) > 0 {
		if d, ok := deaths[0].(amqp.Table); ok {
			if r, ok := d["reason"].(string); ok {
				return r
			}
		}
	}
	return "unknown"
}

// replay moves the dead letters present when it starts back to the work
// queue, those with the given reason only when --reason is set, at most
// --limit of them. The customer of each replayed message goes back to
// pending with its attempts cleared. Dead letters it leaves go back to the
// end of the dead-letter queue unchanged. It reports how many it moved.
func replay(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	openCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	store, err := pgstore.Open(openCtx, cfg.store())
	cancel()
	if err != nil {
		return err
	}
	defer store.Close()
	conn, err := rabbit.Dial(ctx, cfg.AMQPURL, "consumer replay "+cfg.Name)
	if err != nil {
		return fmt.Errorf("%w: is RabbitMQ running? (make infra)", err)
	}
	defer conn.Close()
	pub, err := rabbit.NewPublisher(conn)
	if err != nil {
		return err
	}
	defer pub.Close() //nolint:errcheck // closing the connection closes it too
	top := cfg.topology()
	if err := top.Declare(pub.Channel()); err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(top.DeadQueue(), true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", top.DeadQueue(), err)
	}

	counts := map[string]int{}
	var replayed, kept int
	for seen := 0; seen < q.Messages; seen++ {
		if cfg.ReplayLimit > 0 && replayed >= cfg.ReplayLimit {
			break
		}
		d, ok, err := ch.Get(top.DeadQueue(), false)
		if err != nil {
			return fmt.Errorf("read %s: %w", top.DeadQueue(), err)
		}
		if !ok {
			break
		}
		reason := deathReason(d.Headers)
		msg := rabbit.Message{Publishing: amqp.Publishing{
			Headers: amqp.Table{}, ContentType: d.ContentType, DeliveryMode: amqp.Persistent,
			MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body,
		}}
		for k, v := range d.Headers {
			msg.Headers[k] = v
		}
		if cfg.ReplayReason != "" && reason != cfg.ReplayReason {
			// Not ours to replay: to the back of the dead-letter queue as it was.
			msg.Exchange, msg.Key = top.DeadExchange(), rabbit.DeadKey
			kept++
		} else {
			for _, h := range deadHeaders {
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
			replayed++
			counts[reason]++
		}
		if err := pub.PublishAll(ctx, []rabbit.Message{msg}); err != nil {
			return fmt.Errorf("move dead letter %s: %w (it stays in %s)", d.MessageId, err, top.DeadQueue())
		}
		if err := d.Ack(false); err != nil {
			return fmt.Errorf("ack dead letter %s: %w", d.MessageId, err)
		}
	}
	logger.Info("replay done", "replayed", replayed, "kept", kept, "by_reason", fmt.Sprint(counts))
	what := "dead letters"
	if cfg.ReplayReason != "" {
		what = "dead letters with reason " + cfg.ReplayReason
	}
	_, err = fmt.Fprintf(stdout, "replayed %d %s to %s; %d left in %s\n", replayed, what, top.Queue(), q.Messages-replayed, top.DeadQueue())
	return errors.Join(err)
}
