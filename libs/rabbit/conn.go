package rabbit

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Redact returns an AMQP URL with its password hidden, fit for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Dial connects to the broker, naming the connection so that it can be told
// apart in the management UI. It gives up when ctx is done.
func Dial(ctx context.Context, rawURL, name string) (*amqp.Connection, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("AMQP URL is empty: set --amqp-url or AMQP_URL")
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake must not hang on a broker that accepts and then
			// stalls; amqp091-go clears the deadline once it is connected.
			if err := conn.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
				_ = conn.Close()
				return nil, err
			}
			return conn, nil
		},
	}
	conn, err := amqp.DialConfig(rawURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to RabbitMQ at %s: %w", Redact(rawURL), err)
	}
	return conn, nil
}
