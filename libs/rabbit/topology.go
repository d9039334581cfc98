// Package rabbit adapts RabbitMQ to the pipeline: the one Topology that the
// producer and the consumers both declare, dialling one broker of a list (the
// nodes of a cluster) with redacted URLs, and a publisher that waits for
// broker confirms within a bounded window.
//
// Reconnection is the caller's loop (dial, declare, work, and on a closed
// connection start again with backoff) rather than amqp091-go's experimental
// built-in recovery: delivery tags and pending confirms belong to one channel,
// so after a lost connection the caller must drop its in-flight batch or
// republish its unconfirmed rows, and an explicit loop makes that visible.
package rabbit

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Routing keys inside the exchanges.
const (
	ImportKey = "import"
	DeadKey   = "dead"
)

// Topology names the exchanges and queues and holds the settings they are
// declared with. Both binaries declare it on every (re)connect; declaring is
// idempotent as long as the arguments do not change.
type Topology struct {
	// Prefix is prepended to every name. Default "customers"; tests set
	// their own so that each test has its own queues.
	Prefix string
	// RetryDelays are the backoff steps, one retry queue each, whose TTL
	// returns the message to the exchange. Default 1s, 10s, 1m, 10m.
	RetryDelays []time.Duration
	// DeliveryLimit is the quorum queue's safety net for a message that
	// keeps a consumer from acking it (a crash on every delivery): past it
	// the broker dead-letters the message. Default 20.
	DeliveryLimit int
	// Replicas is every quorum queue's initial group size
	// (x-quorum-initial-group-size): how many nodes of a cluster hold a
	// replica of it. Default 0: not sent, the broker's default. The broker
	// refuses to redeclare a queue with another value, so every client must
	// agree; Replicas(list) derives it from the AMQP URL list.
	Replicas int
}

// WithDefaults returns a copy with zero fields set to their defaults.
func (t Topology) WithDefaults() Topology {
	if t.Prefix == "" {
		t.Prefix = "customers"
	}
	if len(t.RetryDelays) == 0 {
		t.RetryDelays = []time.Duration{time.Second, 10 * time.Second, time.Minute, 10 * time.Minute}
	}
	if t.DeliveryLimit == 0 {
		t.DeliveryLimit = 20
	}
	return t
}

// Exchange is the direct exchange producers publish to and retry queues
// dead-letter back into.
func (t Topology) Exchange() string { return t.Prefix }

// DeadExchange receives what is given up.
func (t Topology) DeadExchange() string { return t.Prefix + ".dlx" }

// Queue is the work queue the consumers read.
func (t Topology) Queue() string { return t.Prefix + ".import" }

// DeadQueue holds what was given up, with headers saying why.
func (t Topology) DeadQueue() string { return t.Prefix + ".dead" }

// RetryQueue is the queue for the backoff step i (0-based), named as a
// person writes the delay: customers.retry.1m, not customers.retry.1m0s.
func (t Topology) RetryQueue(i int) string {
	return t.Prefix + ".retry." + DelayName(t.RetryDelays[i])
}

// DelayName writes d as a person would: time.Duration's form without its
// trailing zero units (1m, 10m, 1h30m, 1m30s, 500ms).
func DelayName(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Queues lists every queue, work queue first.
func (t Topology) Queues() []string {
	qs := []string{t.Queue(), t.DeadQueue()}
	for i := range t.RetryDelays {
		qs = append(qs, t.RetryQueue(i))
	}
	return qs
}

// Declare declares the exchanges, queues and bindings. Quorum queues with
// at-least-once dead-lettering keep a message safe while it moves between
// queues; nothing here needs more than RabbitMQ 3.10.
func (t Topology) Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.Exchange(), amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.Exchange(), err)
	}
	if err := ch.ExchangeDeclare(t.DeadExchange(), amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", t.DeadExchange(), err)
	}
	declare := func(name string, args amqp.Table) error {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
		if t.Replicas > 0 {
			args["x-quorum-initial-group-size"] = int64(t.Replicas)
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %s: %w (if it exists with other arguments, delete it or use another --queue-prefix)", name, err)
		}
		return nil
	}
	if err := declare(t.Queue(), amqp.Table{
		"x-delivery-limit":          int64(t.DeliveryLimit),
		"x-dead-letter-exchange":    t.DeadExchange(),
		"x-dead-letter-routing-key": DeadKey,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}); err != nil {
		return err
	}
	if err := ch.QueueBind(t.Queue(), ImportKey, t.Exchange(), false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", t.Queue(), err)
	}
	if err := declare(t.DeadQueue(), amqp.Table{}); err != nil {
		return err
	}
	if err := ch.QueueBind(t.DeadQueue(), DeadKey, t.DeadExchange(), false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", t.DeadQueue(), err)
	}
	for i, d := range t.RetryDelays {
		if err := declare(t.RetryQueue(i), amqp.Table{
			"x-message-ttl":             d.Milliseconds(),
			"x-dead-letter-exchange":    t.Exchange(),
			"x-dead-letter-routing-key": ImportKey,
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
		}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes every queue and exchange of the topology. Tests use it to
// leave nothing behind.
func (t Topology) Delete(ch *amqp.Channel) error {
	for _, q := range t.Queues() {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("delete queue %s: %w", q, err)
		}
	}
	for _, x := range []string{t.Exchange(), t.DeadExchange()} {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			return fmt.Errorf("delete exchange %s: %w", x, err)
		}
	}
	return nil
}
