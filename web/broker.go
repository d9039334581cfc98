package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// errBrokerDown answers 503: RabbitMQ does not answer.
var errBrokerDown = errors.New("RabbitMQ is unavailable")

// broker is the service's one connection to RabbitMQ, dialled when first
// needed and again after it is lost, for the queue depth and the dead
// letters (each import has connections of its own).
type broker struct {
	url, name string
	top       rabbit.Topology

	mu   sync.Mutex
	conn *amqp.Connection
	// walk serialises the dead-letter walks of this instance: two at once
	// would each move the other's messages.
	walk sync.Mutex
}

func (b *broker) connection(ctx context.Context) (*amqp.Connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil && !b.conn.IsClosed() {
		return b.conn, nil
	}
	conn, err := rabbit.Dial(ctx, b.url, b.name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBrokerDown, err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = b.top.Declare(ch)
		_ = ch.Close()
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: %w", errBrokerDown, err)
	}
	b.conn = conn
	return conn, nil
}

// ready returns the number of messages ready in the work queue.
func (b *broker) ready(ctx context.Context) (int, error) {
	conn, err := b.connection(ctx)
	if err != nil {
		return 0, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("%w: open channel: %w", errBrokerDown, err)
	}
	defer ch.Close() //nolint:errcheck // nothing to do about it
	q, err := ch.QueueDeclarePassive(b.top.Queue(), true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: inspect %s: %w", errBrokerDown, b.top.Queue(), err)
	}
	return q.Messages, nil
}

func (b *broker) inspect(ctx context.Context, opts deadletter.InspectOptions) (deadletter.Report, error) {
	conn, err := b.connection(ctx)
	if err != nil {
		return deadletter.Report{}, err
	}
	b.walk.Lock()
	defer b.walk.Unlock()
	return deadletter.Inspect(ctx, conn, b.top, opts)
}

func (b *broker) replay(ctx context.Context, st *pgstore.Store, opts deadletter.ReplayOptions) (deadletter.ReplayResult, error) {
	conn, err := b.connection(ctx)
	if err != nil {
		return deadletter.ReplayResult{}, err
	}
	b.walk.Lock()
	defer b.walk.Unlock()
	return deadletter.Replay(ctx, conn, b.top, st, opts)
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		_ = b.conn.Close()
	}
}
