package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/rabbit"
)

// sampleMessages reads up to n valid rows of file and shapes them exactly as
// the producer does (body, properties, headers), so the probes move messages
// of the pipeline's size.
func sampleMessages(file string, n int) ([]amqp.Publishing, error) {
	f, err := os.Open(file) //nolint:gosec // the bench's own generated file
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	defer f.Close()
	src, err := csvsource.NewReader(f, csvsource.Config{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	const fp = "0123456789abcdef" // the producer's fingerprint is 16 hex digits
	source := filepath.Base(file)
	var msgs []amqp.Publishing
	for len(msgs) < n {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if _, bad := errors.AsType[*csvsource.RecordError](err); bad {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		m := src.Map(rec)
		c := customer.Customer{
			Email: m.Email, Name: m.Name, FirstName: m.FirstName, LastName: m.LastName, Phone: m.Phone,
			Attributes: m.Attributes, Source: source + "#" + fp[:8], Row: rec.Row,
		}.Normalize()
		if c.Validate() != nil {
			continue
		}
		body, err := c.Encode()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    fp + ":" + strconv.FormatInt(rec.Row, 10),
			Timestamp:    time.Now().UTC(),
			Type:         "customer",
			AppId:        "producer",
			Headers:      amqp.Table{"x-source": source, "x-fingerprint": fp, "x-row": rec.Row, "x-offset": rec.Offset},
			Body:         body,
		})
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%s has no valid row to sample", file)
	}
	return msgs, nil
}

// prober measures the broker alone.
type prober struct {
	url  string
	msgs []amqp.Publishing
}

// publish sends n messages over channels confirm-mode channels, each with
// at most window unconfirmed, and returns the time until the last confirm.
func (p prober) publish(ctx context.Context, top rabbit.Topology, n, channels, window int) (time.Duration, error) {
	conn, err := rabbit.Dial(ctx, p.url, "bench-publish")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var next atomic.Int64
	began := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	for range channels {
		g.Go(func() error {
			pub, err := rabbit.NewPublisher(conn)
			if err != nil {
				return err
			}
			defer pub.Close()
			type sent struct {
				dc *amqp.DeferredConfirmation
				id string
			}
			// A ring of the unconfirmed, oldest first: confirms come in
			// order on one channel, so waiting on the oldest frees a slot.
			pending := make([]sent, 0, window)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				msg := p.msgs[i%int64(len(p.msgs))]
				msg.MessageId = "probe:" + strconv.FormatInt(i, 10)
				if len(pending) == window {
					if err := pub.Wait(ctx, pending[0].dc, pending[0].id); err != nil {
						return err
					}
					pending = pending[1:]
				}
				dc, err := pub.Publish(ctx, top.Exchange(), rabbit.ImportKey, msg)
				if err != nil {
					return err
				}
				pending = append(pending, sent{dc, msg.MessageId})
			}
			for _, s := range pending {
				if err := pub.Wait(ctx, s.dc, s.id); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("publish probe: %w", err)
	}
	return time.Since(began), nil
}

// drainer is a set of consumers, each on its own connection as separate
// consumer processes would be, that count deliveries and ack in batches.
type drainer struct {
	got   atomic.Int64
	want  int64
	full  chan struct{} // closed when want deliveries arrived
	doneT atomic.Int64  // unix nanos of the want-th delivery
}

// drain consumes from the queue with consumers connections until n messages
// arrived; ready is closed once every consumer is registered.
func (p prober) drain(ctx context.Context, top rabbit.Topology, n, consumers, prefetch int, ready chan<- struct{}) (*drainer, func() error, error) {
	d := &drainer{want: int64(n), full: make(chan struct{})}
	g, gctx := errgroup.WithContext(ctx)
	var registered atomic.Int64
	for c := range consumers {
		conn, err := rabbit.Dial(ctx, p.url, "bench-drain-"+strconv.Itoa(c))
		if err != nil {
			return nil, nil, err
		}
		ch, err := conn.Channel()
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("open drain channel: %w", err)
		}
		if err := ch.Qos(prefetch, 0, false); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("set prefetch: %w", err)
		}
		deliveries, err := ch.ConsumeWithContext(gctx, top.Queue(), "", false, false, false, false, nil)
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("consume %s: %w", top.Queue(), err)
		}
		if registered.Add(1) == int64(consumers) {
			close(ready)
		}
		g.Go(func() error {
			defer conn.Close()
			// Acking every quarter of the prefetch keeps deliveries
			// flowing with few ack frames, as a batching consumer does.
			ackEvery := max(prefetch/4, 1)
			var last uint64
			unacked := 0
			for {
				select {
				case <-d.full:
					if unacked > 0 {
						return ch.Ack(last, true)
					}
					return nil
				case <-gctx.Done():
					return nil
				case m, ok := <-deliveries:
					if !ok {
						return errors.New("the broker closed a drain channel")
					}
					last, unacked = m.DeliveryTag, unacked+1
					if unacked >= ackEvery {
						if err := ch.Ack(last, true); err != nil {
							return fmt.Errorf("ack: %w", err)
						}
						unacked = 0
					}
					if d.got.Add(1) == d.want {
						d.doneT.Store(time.Now().UnixNano())
						close(d.full)
					}
				}
			}
		})
	}
	return d, g.Wait, nil
}

// wait waits for all n deliveries and returns when the last arrived.
func (d *drainer) wait(ctx context.Context) (time.Time, error) {
	select {
	case <-d.full:
		return time.Unix(0, d.doneT.Load()), nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("drain probe: %d of %d messages: %w", d.got.Load(), d.want, ctx.Err())
	}
}

// Ceilings are the broker's limits on this machine for the pipeline's
// messages and queue type.
type Ceilings struct {
	Publish, PublishWindow float64
	PublishCPU             CPU
	Drain                  float64
	DrainCPU               CPU
	PassThrough            float64
	PassCPU                CPU
}

// ceilings runs the three probes, each on fresh queues of its own.
func (b *bench) ceilings(ctx context.Context) (Ceilings, error) {
	p := prober{url: b.cfg.AMQPURL, msgs: b.sample}
	n := b.cfg.ProbeRows
	var c Ceilings
	var kept rabbit.Topology
	for _, w := range b.cfg.Windows {
		top, err := b.declare(ctx, fmt.Sprintf("probe-w%d", w), false)
		if err != nil {
			return c, err
		}
		before := takeCPU()
		d, err := p.publish(ctx, top, n, b.cfg.Channels, w)
		after := takeCPU()
		if err != nil {
			return c, err
		}
		rate := float64(n) / d.Seconds()
		b.logger.Info("publish-only probe", "window", w, "channels", b.cfg.Channels, "messages", n, "msg_per_s", int(rate))
		if rate > c.Publish {
			if kept.Prefix != "" {
				b.deleteTopology(kept)
			}
			kept = top
			c.Publish, c.PublishWindow = rate, float64(w)
			c.PublishCPU = between(before, after)
			c.PublishCPU.Client = float64(after.self-before.self) / clockTicks
		} else {
			b.deleteTopology(top)
		}
	}

	// Drain-only: the best publish run's full queue.
	ready := make(chan struct{})
	before := takeCPU()
	began := time.Now()
	d, waitDrain, err := p.drain(ctx, kept, n, b.cfg.Consumers, b.cfg.Prefetch, ready)
	if err != nil {
		return c, err
	}
	end, err := d.wait(ctx)
	after := takeCPU()
	if werr := waitDrain(); err == nil && werr != nil {
		err = werr
	}
	b.deleteTopology(kept)
	if err != nil {
		return c, err
	}
	c.Drain = float64(n) / end.Sub(began).Seconds()
	c.DrainCPU = between(before, after)
	c.DrainCPU.Consumers = float64(after.self-before.self) / clockTicks
	b.logger.Info("drain-only probe", "consumers", b.cfg.Consumers, "prefetch", b.cfg.Prefetch, "messages", n, "msg_per_s", int(c.Drain))

	// Pass-through: drainers first, then the publishers.
	top, err := b.declare(ctx, "probe-pass", false)
	if err != nil {
		return c, err
	}
	defer b.deleteTopology(top)
	ready = make(chan struct{})
	d, waitDrain, err = p.drain(ctx, top, n, b.cfg.Consumers, b.cfg.Prefetch, ready)
	if err != nil {
		return c, err
	}
	<-ready
	before = takeCPU()
	began = time.Now()
	_, err = p.publish(ctx, top, n, b.cfg.Channels, int(c.PublishWindow))
	if err == nil {
		end, err = d.wait(ctx)
	}
	after = takeCPU()
	if werr := waitDrain(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return c, err
	}
	c.PassThrough = float64(n) / end.Sub(began).Seconds()
	c.PassCPU = between(before, after)
	c.PassCPU.Client = float64(after.self-before.self) / clockTicks
	b.logger.Info("pass-through probe", "messages", n, "msg_per_s", int(c.PassThrough))
	return c, nil
}
