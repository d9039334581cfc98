package importer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/rabbit"
)

// connector owns the producer's one connection and hands out publishing
// channels. When the connection is lost it dials again, with backoff, for up
// to the reconnect timeout, and declares the topology on every new connection.
// The very first dial is not retried: a broker that is not there at start is
// a configuration problem worth saying at once.
type connector struct {
	url, name string
	top       rabbit.Topology
	timeout   time.Duration
	logger    *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
}

// publisher returns a new confirm-mode channel on a live connection.
func (c *connector) publisher(ctx context.Context) (*rabbit.Publisher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.conn == nil
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	deadline := time.Now().Add(c.timeout)
	for {
		pub, err := c.open(ctx)
		if err == nil {
			return pub, nil
		}
		if first {
			return nil, fmt.Errorf("%w: is RabbitMQ running? (make infra)", err)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("RabbitMQ unreachable for --reconnect-timeout %s: %w", c.timeout, err)
		}
		wait := bo.NextBackOff()
		c.logger.Warn("RabbitMQ connection lost; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reconnect to RabbitMQ: %w", context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

func (c *connector) open(ctx context.Context) (*rabbit.Publisher, error) {
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := rabbit.Dial(ctx, c.url, c.name)
		if err != nil {
			return nil, err
		}
		pub, err := rabbit.NewPublisher(conn)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		err = c.top.Declare(pub.Channel())
		_ = pub.Close()
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		if c.conn != nil {
			c.logger.Info("reconnected to RabbitMQ")
		}
		c.conn = conn
	}
	return rabbit.NewPublisher(c.conn)
}

func (c *connector) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.Close()
	}
}
