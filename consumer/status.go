package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// Where the queue depths came from.
const (
	sourceManagement = "management"
	sourceAMQP       = "amqp"
)

// managementTimeout bounds the management API request: when the plugin is
// off or a firewall drops the port, status falls back to AMQP quickly
// rather than after the whole connect timeout.
const managementTimeout = 5 * time.Second

// statusReport is what `consumer status` prints, as tables or as JSON.
type statusReport struct {
	// QueueSource is "management" (ready and unacked counts) or "amqp"
	// (passive declares: ready counts only).
	QueueSource string       `json:"queue_source,omitempty"`
	Vhost       string       `json:"vhost"`
	Queues      []queueDepth `json:"queues"`
	QueueError  string       `json:"queue_error,omitempty"`

	Customers      map[pgstore.State]int64 `json:"customers"`
	CustomersTotal int64                   `json:"customers_total"`
	CustomersError string                  `json:"customers_error,omitempty"`
}

// queueDepth is one queue of the topology.
type queueDepth struct {
	Name string `json:"name"`
	// Role is import, retry <delay> or dead.
	Role string `json:"role"`
	// Messages is ready plus unacked from the management API; from AMQP,
	// the ready messages only.
	Messages  int64  `json:"messages"`
	Ready     *int64 `json:"ready,omitempty"`
	Unacked   *int64 `json:"unacked,omitempty"`
	Consumers int64  `json:"consumers"`
	// Missing reports a queue not declared yet: no consumer or producer has
	// run against this broker with this --queue-prefix.
	Missing bool `json:"missing,omitempty"`
}

// status prints the queue depths and the customers per CRM state. It prints
// what it could find out even when a service is down, and then returns an
// error naming what it could not.
func status(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	rep := statusReport{Customers: map[pgstore.State]int64{}}
	var errs []error

	top := cfg.topology()
	queues, vhost, source, err := queueDepths(ctx, cfg, top, logger)
	rep.Queues, rep.Vhost, rep.QueueSource = queues, vhost, source
	if err != nil {
		rep.QueueError = err.Error()
		errs = append(errs, err)
	}

	counts, err := customerCounts(ctx, cfg)
	if err != nil {
		rep.CustomersError = err.Error()
		errs = append(errs, err)
	}
	for st, n := range counts {
		rep.Customers[st] = n
		rep.CustomersTotal += n
	}

	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.print(stdout, redactAll(cfg.ManagementURL))
	}
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("status incomplete: %w", errors.Join(errs...))
	}
	return nil
}

// queueRoles lists the topology's queues in the order work flows through
// them: import, the retry steps, dead.
func queueRoles(top rabbit.Topology) []queueDepth {
	qs := []queueDepth{{Name: top.Queue(), Role: "import"}}
	for i, d := range top.RetryDelays {
		qs = append(qs, queueDepth{Name: top.RetryQueue(i), Role: "retry " + d.String()})
	}
	return append(qs, queueDepth{Name: top.DeadQueue(), Role: "dead"})
}

// queueDepths asks the management API, and AMQP when the API does not
// answer: the API tells ready from unacked, AMQP needs nothing but the
// broker.
func queueDepths(ctx context.Context, cfg Config, top rabbit.Topology, logger *slog.Logger) ([]queueDepth, string, string, error) {
	uri, err := amqp.ParseURI(cfg.AMQPURL)
	if err != nil {
		return nil, "", "", fmt.Errorf("--amqp-url %s: %w", rabbit.Redact(cfg.AMQPURL), err)
	}
	queues := queueRoles(top)
	merr := fromManagement(ctx, cfg.ManagementURL, uri.Vhost, queues)
	if merr == nil {
		return queues, uri.Vhost, sourceManagement, nil
	}
	logger.Warn("RabbitMQ management API unavailable; reading queue depths over AMQP (ready messages only)",
		"management_url", redactAll(cfg.ManagementURL), "error", merr)
	queues = queueRoles(top)
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := fromAMQP(ctx, cfg.AMQPURL, queues); err != nil {
		return queueRoles(top), uri.Vhost, "", fmt.Errorf("queue depths: management API: %w; AMQP: %w", merr, err)
	}
	return queues, uri.Vhost, sourceAMQP, nil
}

// managementQueue is the part of the management API's queue object status
// reads.
type managementQueue struct {
	Name      string `json:"name"`
	Messages  int64  `json:"messages"`
	Ready     int64  `json:"messages_ready"`
	Unacked   int64  `json:"messages_unacknowledged"`
	Consumers int64  `json:"consumers"`
}

// fromManagement fills queues from GET /api/queues/{vhost}. The
// credentials in rawURL go in the Authorization header, never in a URL that
// an error could print.
func fromManagement(ctx context.Context, rawURL, vhost string, queues []queueDepth) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return errors.New("--management-url is not a URL")
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
	ctx, cancel := context.WithTimeout(ctx, managementTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil) //nolint:gosec // the operator's own --management-url
	if err != nil {
		return fmt.Errorf("management request: %w", err)
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // the operator's own --management-url
	if err != nil {
		return fmt.Errorf("ask the management API: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return errors.New("the management API refused the credentials of --management-url (401)")
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("vhost %q not found by the management API (404)", vhost)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: %s", req.URL.EscapedPath(), resp.Status)
	}
	var got []managementQueue
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&got); err != nil {
		return fmt.Errorf("decode management API answer: %w", err)
	}
	byName := make(map[string]managementQueue, len(got))
	for _, q := range got {
		byName[q.Name] = q
	}
	for i := range queues {
		q, ok := byName[queues[i].Name]
		if !ok {
			queues[i].Missing = true
			continue
		}
		queues[i].Messages, queues[i].Consumers = q.Messages, q.Consumers
		queues[i].Ready, queues[i].Unacked = &q.Ready, &q.Unacked
	}
	return nil
}

// fromAMQP fills queues from passive declares, which count ready messages
// and consumers and declare nothing.
func fromAMQP(ctx context.Context, amqpURL string, queues []queueDepth) error {
	conn, err := rabbit.Dial(ctx, amqpURL, "consumer status")
	if err != nil {
		return err
	}
	defer conn.Close()
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	for i := range queues {
		// A passive declare of a missing queue closes the channel: open a
		// new one whenever that happened.
		if ch == nil || ch.IsClosed() {
			if ch, err = conn.Channel(); err != nil {
				return fmt.Errorf("open channel: %w", err)
			}
		}
		q, err := ch.QueueDeclarePassive(queues[i].Name, true, false, false, false, nil)
		if amqpErr, ok := errors.AsType[*amqp.Error](err); ok && amqpErr.Code == amqp.NotFound {
			queues[i].Missing = true
			continue
		}
		if err != nil {
			return fmt.Errorf("inspect queue %s: %w", queues[i].Name, err)
		}
		queues[i].Messages, queues[i].Consumers = int64(q.Messages), int64(q.Consumers)
	}
	return nil
}

func customerCounts(ctx context.Context, cfg Config) (map[pgstore.State]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	store, err := pgstore.Open(ctx, cfg.store())
	if err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	defer store.Close()
	counts, err := store.Counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	return counts, nil
}

// print writes the report as two tables.
func (r statusReport) print(w io.Writer, mgmtURL string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch r.QueueSource {
	case sourceManagement:
		fmt.Fprintf(tw, "Queues (vhost %s, from the management API at %s; its figures lag by a few seconds):\n", r.Vhost, mgmtURL)
	case sourceAMQP:
		fmt.Fprintf(tw, "Queues (vhost %s, over AMQP: the management API did not answer, so ready messages only):\n", r.Vhost)
	default:
		fmt.Fprintf(tw, "Queues (vhost %s):\n", r.Vhost)
	}
	if r.QueueError != "" {
		fmt.Fprintf(tw, "  unavailable: %s\n", r.QueueError)
	} else {
		fmt.Fprintln(tw, "  QUEUE\tROLE\tMESSAGES\tREADY\tUNACKED\tCONSUMERS")
		for _, q := range r.Queues {
			if q.Missing {
				fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t(not declared yet)\n", q.Name, q.Role)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%d\n", q.Name, q.Role, q.Messages, optional(q.Ready), optional(q.Unacked), q.Consumers)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Customers (PostgreSQL, by CRM state):")
	if r.CustomersError != "" {
		fmt.Fprintf(tw, "  unavailable: %s\n", r.CustomersError)
	} else {
		fmt.Fprintln(tw, "  STATE\tCUSTOMERS")
		for _, st := range []pgstore.State{pgstore.StatePending, pgstore.StateSynced, pgstore.StateRejected, pgstore.StateFailed} {
			fmt.Fprintf(tw, "  %s\t%d\n", st, r.Customers[st])
		}
		fmt.Fprintf(tw, "  total\t%d\n", r.CustomersTotal)
	}
	return tw.Flush()
}

func optional(n *int64) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprint(*n)
}

// redactAll drops a URL's user and password altogether: status output is
// pasted into tickets, and even a user name is more than it needs.
func redactAll(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}
