package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// errBadURL marks an AMQP URL that cannot be used as written.
var errBadURL = errors.New("malformed AMQP URL")

// Attempt bounds, per URL: the TCP connect, then the whole handshake. A
// context deadline that comes sooner wins.
const (
	dialTimeout      = 10 * time.Second
	handshakeTimeout = 15 * time.Second
)

// Redact returns an AMQP URL, or a comma-separated list of them, with every
// password hidden, fit for logs and errors.
func Redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// ParseURLs splits a comma-separated list of broker URLs (the nodes of a
// cluster, or one broker) and checks each. A comma inside a password must be
// percent-encoded (%2C). The error names the entry that is wrong and is
// permanent (IsPermanent).
func ParseURLs(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("%w: AMQP URL is empty: set --amqp-url or AMQP_URL", errBadURL)
	}
	var urls []string
	for i, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("%w: entry %d of the AMQP URL list is empty", errBadURL, i+1)
		}
		if _, err := amqp.ParseURI(p); err != nil {
			return nil, fmt.Errorf("%w: entry %d %s: %w", errBadURL, i+1, Redact(p), err)
		}
		urls = append(urls, p)
	}
	return urls, nil
}

// Replicas is the quorum queues' initial group size for an AMQP URL list:
// one replica per listed node when it lists more than one (a cluster), else
// 0, which leaves it to the broker. Every client of a cluster must be given
// the same list length, since the broker refuses to redeclare a queue with
// another group size.
func Replicas(list string) int {
	urls, err := ParseURLs(list)
	if err != nil || len(urls) < 2 {
		return 0
	}
	return len(urls)
}

// IsPermanent reports whether err is one that retrying cannot cure: a
// malformed URL, credentials the broker refuses (403 ACCESS_REFUSED, also for
// an operation the user has no permission for) or a virtual host that does
// not exist or the user may not use (530 NOT_ALLOWED). A broker that is down,
// unreachable, or closed the connection is not permanent.
func IsPermanent(err error) bool {
	if errors.Is(err, errBadURL) {
		return true
	}
	amqpErr, ok := errors.AsType[*amqp.Error](err)
	return ok && (amqpErr.Code == amqp.AccessRefused || amqpErr.Code == amqp.NotAllowed)
}

// Dialer connects to one of several brokers, the nodes of one cluster: the
// first that answers, in list order. Each later Dial starts with the URL
// after the one it connected to last, so that after a lost connection a
// client goes round the list rather than back to the node it lost. Safe for
// concurrent use.
type Dialer struct {
	urls []string
	name string

	mu   sync.Mutex
	next int
}

// NewDialer returns a dialer for a comma-separated list of URLs, naming its
// connections name (shown in the management UI).
func NewDialer(list, name string) (*Dialer, error) {
	urls, err := ParseURLs(list)
	if err != nil {
		return nil, err
	}
	return &Dialer{urls: urls, name: name}, nil
}

// Dial tries each URL once, in turn, and returns the first connection made
// with the URL it was made to. When none answers, the error joins each URL's;
// it is permanent (IsPermanent) when a broker refused for a reason retrying
// cannot cure and none answered: a user or virtual host is the same on every
// node of a cluster. It gives up when ctx is done.
func (d *Dialer) Dial(ctx context.Context) (*amqp.Connection, string, error) {
	d.mu.Lock()
	start := d.next
	d.mu.Unlock()
	var errs, permanent []error
	for i := range d.urls {
		if ctx.Err() != nil {
			break
		}
		n := (start + i) % len(d.urls)
		conn, err := dialOne(ctx, d.urls[n], d.name)
		if err == nil {
			d.mu.Lock()
			d.next = (n + 1) % len(d.urls)
			d.mu.Unlock()
			return conn, d.urls[n], nil
		}
		errs = append(errs, err)
		if IsPermanent(err) {
			permanent = append(permanent, err)
		}
	}
	if len(permanent) > 0 {
		return nil, "", errors.Join(permanent...)
	}
	if len(errs) == 0 {
		return nil, "", fmt.Errorf("connect to RabbitMQ at %s: %w", Redact(strings.Join(d.urls, ",")), context.Cause(ctx))
	}
	return nil, "", errors.Join(errs...)
}

// Dial connects to the first broker of a comma-separated list that answers,
// naming the connection so that it can be told apart in the management UI.
// It gives up when ctx is done. Permanent errors answer IsPermanent.
func Dial(ctx context.Context, list, name string) (*amqp.Connection, error) {
	d, err := NewDialer(list, name)
	if err != nil {
		return nil, err
	}
	conn, _, err := d.Dial(ctx)
	return conn, err
}

// maxFrameSize caps the frame size negotiated with a broker that allows
// larger frames than this, or sets no limit.
const maxFrameSize = 16 << 20

func dialOne(ctx context.Context, rawURL, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		// The largest frames the broker allows, not the client's default
		// (128 KiB whatever the broker says): a message the broker took
		// must be readable when it is delivered. Capped, for a broker that
		// sets no limit.
		FrameSize: maxFrameSize,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake must not hang on a broker that accepts and then
			// stalls, nor outlive the caller's deadline; amqp091-go clears
			// the deadline once it is connected.
			deadline := time.Now().Add(handshakeTimeout)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			if err := conn.SetDeadline(deadline); err != nil {
				_ = conn.Close()
				return nil, err
			}
			return conn, nil
		},
	}
	conn, err := amqp.DialConfig(rawURL, cfg)
	if err == nil {
		return conn, nil
	}
	var hint string
	amqpErr, isAMQP := errors.AsType[*amqp.Error](err)
	_, isNet := errors.AsType[*net.OpError](err)
	switch {
	case isAMQP && amqpErr.Code == amqp.AccessRefused:
		hint = ": the broker refused the user name or password of the URL"
	case isAMQP && amqpErr.Code == amqp.NotAllowed:
		hint = ": the URL's virtual host does not exist or its user may not use it (rabbitmqctl add_vhost, set_permissions)"
	case isNet:
		hint = ": is RabbitMQ running?"
	}
	return nil, fmt.Errorf("connect to RabbitMQ at %s: %w%s", Redact(rawURL), err, hint)
}
