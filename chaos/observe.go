package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/rabbit"
)

// snapshot is the pipeline's state at one moment, read directly (not
// through the proxies).
type snapshot struct {
	States map[string]int64
	Total  int64
	Ready  map[string]int // ready messages per queue
}

// busy is the number of messages still to be handled: ready in the work and
// retry queues (the dead-letter queue holds what is finished).
func (s snapshot) busy(deadQueue string) int {
	n := 0
	for q, m := range s.Ready {
		if q != deadQueue {
			n += m
		}
	}
	return n
}

func (h *harness) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{States: map[string]int64{}, Ready: map[string]int{}}
	rows, err := h.pool.Query(ctx, `SELECT crm_state, count(*) FROM customers GROUP BY crm_state`)
	if err != nil {
		return s, fmt.Errorf("count customers: %w", err)
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return s, fmt.Errorf("count customers: %w", err)
		}
		s.States[st] = n
		s.Total += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("count customers: %w", err)
	}
	conn, err := h.broker(ctx)
	if err != nil {
		return s, err
	}
	depths, err := rabbit.AMQPDepths(conn, h.top.Queues())
	if err != nil {
		return s, err
	}
	for _, d := range depths {
		if d.Missing {
			return s, fmt.Errorf("queue %s is gone", d.Name)
		}
		s.Ready[d.Name] = int(d.Messages)
	}
	return s, nil
}

// Convergence: nothing pending and nothing queued for this long, with every
// expected customer stored; or quiet for settleLong whatever the count, so
// that a lost customer ends the wait instead of the --duration bound.
const (
	settleShort = 3 * time.Second
	settleLong  = 20 * time.Second
)

// waitQuiet polls until the producer is done, no customer is pending and no
// message is queued (see settleShort and settleLong), or ctx ends.
func (h *harness) waitQuiet(ctx context.Context, want int64, producerDone func() bool) (snapshot, error) {
	var quietSince time.Time
	var last snapshot
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-tick.C:
		}
		s, err := h.snapshot(ctx)
		if err != nil {
			h.logger.Warn("snapshot", "err", err)
			continue
		}
		last = s
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			h.logger.Info("progress", "customers", s.Total, "want", want, "states", s.States, "queued", s.busy(h.top.DeadQueue()),
				"dead", s.Ready[h.top.DeadQueue()])
		}
		quiet := producerDone() && s.States["pending"] == 0 && s.busy(h.top.DeadQueue()) == 0
		if !quiet {
			quietSince = time.Time{}
			continue
		}
		if quietSince.IsZero() {
			quietSince = time.Now()
		}
		q := time.Since(quietSince)
		if (q >= settleShort && s.Total >= want) || q >= settleLong {
			return s, nil
		}
	}
}

// pgRow is one customer as Postgres holds it.
type pgRow struct {
	State, LastError, LeaseOwner string
	Attempts                     int
	SourceRow                    int64
}

func (h *harness) customers(ctx context.Context) (map[string]pgRow, int64, error) {
	rows, err := h.pool.Query(ctx, `SELECT email, crm_state, crm_attempts, coalesce(crm_last_error, ''), coalesce(crm_lease_owner, ''), source_row FROM customers`)
	if err != nil {
		return nil, 0, fmt.Errorf("read customers: %w", err)
	}
	defer rows.Close()
	out := map[string]pgRow{}
	var n int64
	for rows.Next() {
		var email string
		var r pgRow
		if err := rows.Scan(&email, &r.State, &r.Attempts, &r.LastError, &r.LeaseOwner, &r.SourceRow); err != nil {
			return nil, 0, fmt.Errorf("read customers: %w", err)
		}
		out[email] = r
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read customers: %w", err)
	}
	return out, n, nil
}

// deadLetter is one message of the dead-letter queue.
type deadLetter struct {
	Reason, Email, LastError, Consumer string
	Attempts                           int64
}

// deadLetters reads the dead-letter queue without acking: closing the
// channel puts every message back, for --keep and for a replay.
func (h *harness) deadLetters(ctx context.Context) ([]deadLetter, error) {
	conn, err := h.broker(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	var out []deadLetter
	for {
		d, ok, err := ch.Get(h.top.DeadQueue(), false)
		if err != nil {
			return out, fmt.Errorf("read %s: %w", h.top.DeadQueue(), err)
		}
		if !ok {
			return out, nil
		}
		out = append(out, describeDead(d))
	}
}

func describeDead(d amqp.Delivery) deadLetter {
	dl := deadLetter{Reason: "unknown"}
	if r, ok := d.Headers["x-death-reason"].(string); ok && r != "" {
		dl.Reason = r
	} else if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		// The broker's own record, newest first: a delivery-limit drop.
		if t, ok := deaths[0].(amqp.Table); ok {
			if r, ok := t["reason"].(string); ok {
				dl.Reason = "broker:" + r
			}
		}
	}
	dl.LastError, _ = d.Headers["x-last-error"].(string)
	dl.Consumer, _ = d.Headers["x-consumer"].(string)
	dl.Attempts, _ = d.Headers["x-attempts"].(int64)
	var body struct {
		Email string `json:"email"`
	}
	if json.Unmarshal(d.Body, &body) == nil {
		dl.Email = customer.NormalizeEmail(body.Email)
	}
	return dl
}
