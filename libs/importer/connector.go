package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/rabbit"
)

// connector owns the producer's one connection and hands out publishing
// channels. When the connection is lost it dials again, going round the
// broker URLs (the nodes of a cluster) with backoff, for up to the reconnect
// timeout, and declares the topology on every new connection. The very first
// dial tries each URL once and is not retried: a broker that is not there at
// start, or that refuses the credentials, is a configuration problem worth
// saying at once. Once a broker has answered, a connection that breaks, even
// before its first channel is open (a node stopping), is a lost connection.
type connector struct {
	dialer  *rabbit.Dialer
	top     rabbit.Topology
	timeout time.Duration
	logger  *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
	// answered is set once a dial succeeded.
	answered bool
}

func newConnector(cfg Config) (*connector, error) {
	d, err := rabbit.NewDialer(cfg.AMQPURL, cfg.AppID+" "+cfg.Source)
	if err != nil {
		return nil, err
	}
	return &connector{dialer: d, top: cfg.Topology, timeout: cfg.ReconnectTimeout, logger: cfg.Logger}, nil
}

// publisher returns a new confirm-mode channel on a live connection.
func (c *connector) publisher(ctx context.Context) (*rabbit.Publisher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.answered {
		pub, err := c.open(ctx)
		if err == nil || !c.answered {
			return pub, err
		}
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	// The reconnect timeout is a deadline: no dial nor wait outlasts it.
	rctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errReconnectTimeout)
	defer cancel()
	for {
		pub, err := c.open(rctx)
		if err == nil {
			return pub, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reconnect to RabbitMQ: %w", context.Cause(ctx))
		}
		if rctx.Err() != nil {
			return nil, fmt.Errorf("RabbitMQ unreachable for --reconnect-timeout %s: %w", c.timeout, err)
		}
		wait := bo.NextBackOff()
		c.logger.Warn("RabbitMQ connection lost; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-rctx.Done():
		case <-time.After(wait):
		}
	}
}

var errReconnectTimeout = errors.New("reconnect timeout")

func (c *connector) open(ctx context.Context) (*rabbit.Publisher, error) {
	if c.conn == nil || c.conn.IsClosed() {
		conn, url, err := c.dialer.Dial(ctx)
		if err != nil {
			return nil, err
		}
		c.answered = true
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
			c.logger.Info("reconnected to RabbitMQ", "amqp", rabbit.Redact(url))
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
