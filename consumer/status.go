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

const statusSummary = `consumer status prints the depth of every queue of the topology and the
customers per CRM state. It prints what it could find out even when a service
is down, and then exits 1 naming what it could not.

Usage:
  consumer status [flags]`

// statusConfig is what `consumer status` is told.
type statusConfig struct {
	Services
	// ManagementURL is the RabbitMQ management API that queue depths are
	// read from, credentials included; when it does not answer, status
	// falls back to AMQP. Default http://guest:guest@localhost:15672.
	ManagementURL string
	// JSON prints one JSON object instead of tables.
	JSON bool
}

func (c *statusConfig) validate() error {
	if u, err := url.Parse(c.ManagementURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("--management-url: want an http(s) URL such as http://guest:guest@localhost:15672")
	}
	return c.Services.validate()
}

// status prints the queue depths and the customers per CRM state. It prints
// what it could find out even when a service is down, and then returns an
// error naming what it could not.
func status(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg statusConfig
	f := newFlags("consumer status", statusSummary, getenv, stderr)
	f.bindServices(&cfg.Services)
	f.String(&cfg.ManagementURL, "management-url", "RABBITMQ_MANAGEMENT_URL", defaultMgmtURL, "RabbitMQ management API `URL` (falls back to AMQP when unreachable)")
	f.Bool(&cfg.JSON, "json", "", false, "print JSON instead of tables")
	logger, err := f.logger(args, cfg.validate, stderr)
	if err != nil {
		return err
	}

	rep := statusReport{Customers: map[pgstore.State]int64{}}
	var errs []error
	queues, vhost, source, err := queueDepths(ctx, cfg, logger)
	rep.Queues, rep.Vhost, rep.QueueSource = queues, vhost, source
	if err != nil {
		rep.QueueError = err.Error()
		errs = append(errs, err)
	}
	counts, err := customerCounts(ctx, cfg.Services)
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
		err = rep.print(stdout, rabbit.RedactAll(cfg.ManagementURL))
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
// them (import, the retry steps, dead), each with its depth when known.
func queueRoles(top rabbit.Topology, depths []rabbit.Depth) []queueDepth {
	qs := []queueDepth{{Name: top.Queue(), Role: "import"}}
	for i, d := range top.RetryDelays {
		qs = append(qs, queueDepth{Name: top.RetryQueue(i), Role: "retry " + rabbit.DelayName(d)})
	}
	qs = append(qs, queueDepth{Name: top.DeadQueue(), Role: "dead"})
	for i := range qs {
		if i < len(depths) {
			d := depths[i]
			qs[i].Messages, qs[i].Ready, qs[i].Unacked, qs[i].Consumers, qs[i].Missing = d.Messages, d.Ready, d.Unacked, d.Consumers, d.Missing
		}
	}
	return qs
}

// queueDepths asks the management API, and AMQP when the API does not
// answer: the API tells ready from unacked, AMQP needs nothing but the
// broker.
func queueDepths(ctx context.Context, cfg statusConfig, logger *slog.Logger) ([]queueDepth, string, string, error) {
	uri, err := amqp.ParseURI(cfg.AMQPURL)
	if err != nil {
		return nil, "", "", fmt.Errorf("--amqp-url %s: %w", rabbit.Redact(cfg.AMQPURL), err)
	}
	top := cfg.topology()
	names := queueRoles(top, nil)
	queues := make([]string, len(names))
	for i, q := range names {
		queues[i] = q.Name
	}
	mctx, cancel := context.WithTimeout(ctx, managementTimeout)
	depths, merr := rabbit.ManagementDepths(mctx, http.DefaultClient, cfg.ManagementURL, uri.Vhost, queues)
	cancel()
	if merr == nil {
		return queueRoles(top, depths), uri.Vhost, sourceManagement, nil
	}
	logger.Warn("RabbitMQ management API unavailable; reading queue depths over AMQP (ready messages only)",
		"management_url", rabbit.RedactAll(cfg.ManagementURL), "error", merr)
	ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	conn, err := rabbit.Dial(ctx, cfg.AMQPURL, "consumer status")
	if err == nil {
		defer conn.Close()
		depths, err = rabbit.AMQPDepths(conn, queues)
	}
	if err != nil {
		return names, uri.Vhost, "", fmt.Errorf("queue depths: management API: %w; AMQP: %w", merr, err)
	}
	return queueRoles(top, depths), uri.Vhost, sourceAMQP, nil
}

func customerCounts(ctx context.Context, cfg Services) (map[pgstore.State]int64, error) {
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
