package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/rabbit"
)

// job is a validated row on its way to a publishing channel.
type job struct {
	row, end int64
	msg      amqp.Publishing
}

// span is what the tracker needs of a row once it is confirmed.
type span struct{ row, end int64 }

func (r *run) pipeline(ctx context.Context, src *csvsource.Reader) error {
	cfg := r.cfg
	r.started = time.Now() // the progress rate counts from here
	var conns *connector
	if !cfg.DryRun {
		var err error
		if conns, err = newConnector(cfg); err != nil {
			return err
		}
		defer conns.close()
		// Connect before reading, so that a broker that is not there is
		// said at once.
		pub, err := conns.publisher(ctx)
		if err != nil {
			return err
		}
		_ = pub.Close()
	}

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job, cfg.Parallel*cfg.Window)
	g.Go(func() error {
		defer close(jobs)
		return r.read(gctx, src, jobs)
	})
	if cfg.DryRun {
		g.Go(func() error {
			for j := range jobs {
				r.valid.Add(1) // nothing is sent
				r.track.done(j.row, j.end)
			}
			return nil
		})
	} else {
		for range cfg.Parallel {
			g.Go(func() error { return r.publish(gctx, conns, jobs) })
		}
	}

	stop := make(chan struct{})
	var bg errgroup.Group
	bg.Go(func() error { return r.checkpointer(stop) })
	bg.Go(func() error { r.reportProgress(stop); return nil })
	err := g.Wait()
	close(stop)
	if berr := bg.Wait(); err == nil {
		err = berr
	}
	return err
}

// read validates each row; valid ones go to jobs, the others to the rejects
// report.
func (r *run) read(ctx context.Context, src *csvsource.Reader, jobs chan<- job) error {
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			r.eof.Store(true)
			return nil
		}
		if recErr, ok := errors.AsType[*csvsource.RecordError](err); ok {
			r.rows.Add(1)
			r.bytes.Store(recErr.End)
			if err := r.rej.add(recErr.Row, recErr.Err.Error(), recErr.Fields); err != nil {
				return err
			}
			r.track.done(recErr.Row, recErr.End)
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", r.cfg.File, err)
		}
		r.rows.Add(1)
		r.bytes.Store(rec.End)

		m := src.Map(rec)
		c := customer.Customer{
			Email: m.Email, Name: m.Name, FirstName: m.FirstName, LastName: m.LastName, Phone: m.Phone,
			Attributes: m.Attributes, Source: r.cfg.Source + "#" + r.fp[:8], Row: rec.Row, ImportID: r.cfg.ImportID,
		}.Normalize()
		if err := c.Validate(); err != nil {
			if err := r.rej.add(rec.Row, r.names.reason(err), rec.Fields); err != nil {
				return err
			}
			r.track.done(rec.Row, rec.End)
			continue
		}
		body, err := c.Encode()
		if err != nil {
			return err
		}
		msg := amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    r.fp + ":" + strconv.FormatInt(rec.Row, 10),
			Timestamp:    time.Now().UTC(),
			Type:         "customer",
			AppId:        r.cfg.AppID,
			Headers: amqp.Table{
				"x-source":      r.cfg.Source,
				"x-fingerprint": r.fp,
				"x-row":         rec.Row,
				"x-offset":      rec.Offset,
			},
			Body: body,
		}
		if r.cfg.ImportID != "" {
			msg.Headers["x-import-id"] = r.cfg.ImportID
		}
		select {
		case jobs <- job{row: rec.Row, end: rec.End, msg: msg}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// publish sends jobs on one channel through a confirm window; a row is done
// only when the broker confirmed it.
func (r *run) publish(ctx context.Context, conns *connector, jobs <-chan job) error {
	w, err := rabbit.NewConfirmWindow(ctx, rabbit.WindowConfig[span]{
		Open:     conns.publisher,
		Exchange: r.cfg.Topology.Exchange(),
		Key:      rabbit.ImportKey,
		Size:     r.cfg.Window,
		Retries:  r.cfg.PublishRetries,
		Confirmed: func(s span) {
			r.published.Add(1)
			r.track.done(s.row, s.end)
		},
		Logger: r.cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()
	for j := range jobs {
		if err := w.Send(ctx, j.msg, span{j.row, j.end}); err != nil {
			return err
		}
	}
	return w.Flush(ctx)
}

// checkpointer saves the checkpoint until stop closes.
func (r *run) checkpointer(stop <-chan struct{}) error {
	if r.cfg.DryRun {
		return nil
	}
	save := time.NewTicker(r.cfg.CheckpointEvery)
	defer save.Stop()
	var saved int64 = -1
	for {
		select {
		case <-stop:
			return nil
		case <-save.C:
			row, off := r.track.mark()
			if row == saved {
				continue
			}
			// Rejected rows up to the mark must be on disk before the mark is.
			if err := r.rej.flush(); err != nil {
				return err
			}
			cp := Checkpoint{File: r.cfg.File, Fingerprint: r.fp, Row: row, Offset: off}
			if err := cp.save(r.cfg.Checkpoint); err != nil {
				return err
			}
			saved = row
		}
	}
}

// reportProgress calls OnProgress (or logs) every ProgressEvery until stop
// closes, and OnProgress once more at the end.
func (r *run) reportProgress(stop <-chan struct{}) {
	if r.cfg.OnProgress != nil {
		r.cfg.OnProgress(r.progress(false))
	}
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			if r.cfg.OnProgress != nil {
				r.cfg.OnProgress(r.progress(true))
			}
			return
		case <-tick.C:
			if r.cfg.OnProgress != nil {
				r.cfg.OnProgress(r.progress(false))
			} else {
				r.logProgress()
			}
		}
	}
}
