package rabbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Depth is one queue's messages and consumers as the broker reports them.
type Depth struct {
	Name string
	// Messages is ready plus unacked from the management API; over AMQP,
	// the ready messages only.
	Messages int64
	// Ready and Unacked are known from the management API only.
	Ready, Unacked *int64
	Consumers      int64
	// Missing reports a queue that is not declared.
	Missing bool
}

// ErrManagement is wrapped by every error of ManagementDepths: the
// management API did not answer, or not as expected, and AMQPDepths can say
// less but needs nothing but the broker.
var ErrManagement = errors.New("RabbitMQ management API")

// managementQueue is the part of the management API's queue object read.
type managementQueue struct {
	Name      string `json:"name"`
	Messages  int64  `json:"messages"`
	Ready     int64  `json:"messages_ready"`
	Unacked   int64  `json:"messages_unacknowledged"`
	Consumers int64  `json:"consumers"`
}

// ManagementDepths reads the named queues of vhost from the management API
// at rawURL (GET /api/queues/{vhost}), credentials taken from the URL
// (guest:guest when it has none) and sent in the Authorization header,
// never in a URL an error could print. ctx bounds the request: a management
// plugin that is off or a port a firewall drops should cost a caller its
// own timeout, not the client's.
func ManagementDepths(ctx context.Context, client *http.Client, rawURL, vhost string, names []string) ([]Depth, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not a URL", ErrManagement, RedactAll(rawURL))
	}
	user, pass := "guest", "guest"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	u.User = nil
	// PathEscape keeps the default vhost "/" as %2F, as the API wants.
	endpoint := strings.TrimSuffix(u.String(), "/") + "/api/queues/" + url.PathEscape(vhost) +
		"?columns=name,messages,messages_ready,messages_unacknowledged,consumers"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: request: %w", ErrManagement, err)
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req) //nolint:gosec // the operator's own management URL
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManagement, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w refused the credentials of the management URL (401)", ErrManagement)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: vhost %q not found (404)", ErrManagement, vhost)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET %s: %s", ErrManagement, req.URL.EscapedPath(), resp.Status)
	}
	var got []managementQueue
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&got); err != nil {
		return nil, fmt.Errorf("%w: decode its answer: %w", ErrManagement, err)
	}
	byName := make(map[string]managementQueue, len(got))
	for _, q := range got {
		byName[q.Name] = q
	}
	depths := make([]Depth, len(names))
	for i, name := range names {
		depths[i].Name = name
		q, ok := byName[name]
		if !ok {
			depths[i].Missing = true
			continue
		}
		depths[i].Messages, depths[i].Consumers = q.Messages, q.Consumers
		depths[i].Ready, depths[i].Unacked = &q.Ready, &q.Unacked
	}
	return depths, nil
}

// AMQPDepths reads the named queues by passive declares, which count ready
// messages and consumers and declare nothing. A missing queue is reported
// as Missing, not as an error.
func AMQPDepths(conn *amqp.Connection, names []string) ([]Depth, error) {
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	depths := make([]Depth, len(names))
	for i, name := range names {
		depths[i].Name = name
		// A passive declare of a missing queue closes the channel: open a
		// new one whenever that happened.
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = conn.Channel(); err != nil {
				return nil, fmt.Errorf("open channel: %w", err)
			}
		}
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if amqpErr, ok := errors.AsType[*amqp.Error](err); ok && amqpErr.Code == amqp.NotFound {
			depths[i].Missing = true
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect queue %s: %w", name, err)
		}
		depths[i].Messages, depths[i].Consumers = int64(q.Messages), int64(q.Consumers)
	}
	return depths, nil
}

// RedactAll drops a URL's user and password altogether, for output pasted
// into tickets, where even a user name is more than it needs.
func RedactAll(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}
