package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/rabbit"
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("producer", version))
		return err
	}
	cfg.progressTo = progressWriter(cfg.Progress, stderr)
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	sum, err := produce(ctx, cfg, logger)
	if sum != nil {
		if err != nil {
			sum.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		if werr := enc.Encode(sum); werr != nil && err == nil {
			err = fmt.Errorf("write summary: %w", werr)
		}
	}
	return err
}

// Summary is the one JSON object the producer prints on stdout.
type Summary struct {
	File        string  `json:"file"`
	Rows        int64   `json:"rows"`
	Published   int64   `json:"published"`
	Rejected    int64   `json:"rejected"`
	ResumedFrom int64   `json:"resumed_from_row,omitempty"`
	Bytes       int64   `json:"bytes"`
	Elapsed     float64 `json:"elapsed_seconds"`
	RowsPerSec  float64 `json:"rows_per_second"`
	Complete    bool    `json:"complete"`
	DryRun      bool    `json:"dry_run,omitempty"`
	Rejects     string  `json:"rejects_file"`
	Checkpoint  string  `json:"checkpoint_file"`
	Error       string  `json:"error,omitempty"`
}

// job is a validated row on its way to a publishing channel.
type job struct {
	row, end int64
	msg      amqp.Publishing
}

type producer struct {
	cfg    Config
	logger *slog.Logger
	top    rabbit.Topology
	track  *tracker
	rej    *rejects

	source    string // file base name
	fp        string
	size      int64
	rows      atomic.Int64
	published atomic.Int64
	bytes     atomic.Int64
	eof       atomic.Bool
}

func produce(ctx context.Context, cfg Config, logger *slog.Logger) (*Summary, error) {
	started := time.Now()
	f, err := os.Open(cfg.File)
	if err != nil {
		return nil, fmt.Errorf("open --file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open --file: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("--file %s is a directory, not a CSV file", cfg.File)
	}
	fp, err := fingerprint(f)
	if err != nil {
		return nil, err
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
			return nil, fmt.Errorf("create --state-dir: %w", err)
		}
	}

	start, done, err := startPosition(cfg, fp, logger)
	if err != nil {
		return nil, err
	}
	sum := &Summary{File: cfg.File, Rejects: cfg.Rejects, Checkpoint: cfg.Checkpoint, DryRun: cfg.DryRun, ResumedFrom: start.Row}
	if done {
		sum.Complete = true
		return sum, nil
	}

	src, err := csvsource.NewReader(f, cfg.csvConfig(start))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", cfg.File, err)
	}
	layout := src.Layout()
	if layout.Guessed() {
		logger.Warn("guessed the CSV layout; pass --header and --columns to set it", "layout", layout.String())
	} else {
		logger.Info("CSV layout", "layout", layout.String())
	}
	if !slices.Contains(layout.Columns, csvsource.ColumnEmail) && len(layout.Columns) > 0 {
		return nil, fmt.Errorf("no email column among %v: name the columns with --columns (for example --columns name,email)", layout.Columns)
	}

	rej, err := openRejects(cfg.Rejects, start.Row > 0, layout.Columns)
	if err != nil {
		return nil, err
	}
	p := &producer{
		cfg: cfg, logger: logger, top: cfg.topology(), track: newTracker(start.Row, start.Offset), rej: rej,
		source: filepath.Base(cfg.File), fp: fp, size: st.Size(),
	}
	p.bytes.Store(start.Offset)

	err = p.pipeline(ctx, src)
	if cerr := rej.close(); err == nil {
		err = cerr
	}
	// The final checkpoint: complete only when every row was read and
	// confirmed; otherwise the mark --resume continues from.
	row, off := p.track.mark()
	complete := err == nil && p.eof.Load()
	if !cfg.DryRun {
		cp := Checkpoint{File: cfg.File, Fingerprint: fp, Row: row, Offset: off, Complete: complete}
		if serr := cp.save(cfg.Checkpoint); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil && !cfg.DryRun {
		err = fmt.Errorf("%w (every row up to %d is safe; run again with --resume to continue from there)", err, row)
	}

	elapsed := time.Since(started)
	sum.Rows = p.rows.Load()
	sum.Published = p.published.Load()
	sum.Rejected = rej.total()
	sum.Bytes = p.bytes.Load() - start.Offset
	sum.Elapsed = elapsed.Seconds()
	if s := elapsed.Seconds(); s > 0 {
		sum.RowsPerSec = float64(sum.Rows) / s
	}
	sum.Complete = complete
	return sum, err
}

// startPosition decides where reading starts: the checkpoint's mark with
// --resume, the first row otherwise. done reports a checkpoint of a run that
// already completed.
func startPosition(cfg Config, fp string, logger *slog.Logger) (csvsource.Position, bool, error) {
	cp, found, err := loadCheckpoint(cfg.Checkpoint)
	if err != nil {
		return csvsource.Position{}, false, err
	}
	switch {
	case !cfg.Resume:
		if found && !cp.Complete {
			logger.Warn("a checkpoint of an interrupted run exists; starting from the first row (pass --resume to continue it)",
				"checkpoint", cfg.Checkpoint, "row", cp.Row)
		}
		return csvsource.Position{}, false, nil
	case !found:
		logger.Warn("--resume: no checkpoint yet; starting from the first row", "checkpoint", cfg.Checkpoint)
		return csvsource.Position{}, false, nil
	case cp.Fingerprint != fp:
		return csvsource.Position{}, false, fmt.Errorf("--resume: checkpoint %s belongs to another file or the file changed since (fingerprint %s, file %s): delete the checkpoint to start over",
			cfg.Checkpoint, cp.Fingerprint, fp)
	case cp.Complete:
		logger.Info("--resume: the checkpoint says this file was imported completely; nothing to do", "checkpoint", cfg.Checkpoint, "rows", cp.Row)
		return csvsource.Position{Row: cp.Row, Offset: cp.Offset}, true, nil
	default:
		logger.Info("resuming", "row", cp.Row+1, "offset", cp.Offset)
		return csvsource.Position{Row: cp.Row, Offset: cp.Offset}, false, nil
	}
}

func (p *producer) pipeline(ctx context.Context, src *csvsource.Reader) error {
	from := p.bytes.Load() // where this run starts reading, for the progress bar
	conns := &connector{url: p.cfg.AMQPURL, name: "producer " + p.source, top: p.top, timeout: p.cfg.ReconnectTimeout, logger: p.logger}
	defer conns.close()
	if !p.cfg.DryRun {
		// Connect before reading, so that a broker that is not there is
		// said at once.
		pub, err := conns.publisher(ctx)
		if err != nil {
			return err
		}
		_ = pub.Close()
	}

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job, p.cfg.Parallel*p.cfg.Window)
	g.Go(func() error {
		defer close(jobs)
		return p.read(gctx, src, jobs)
	})
	if p.cfg.DryRun {
		g.Go(func() error {
			for j := range jobs {
				p.published.Add(1) // counted as publishable; nothing is sent
				p.track.done(j.row, j.end)
			}
			return nil
		})
	}
	if !p.cfg.DryRun {
		for range p.cfg.Parallel {
			g.Go(func() error { return p.publish(gctx, conns, jobs) })
		}
	}

	stop := make(chan struct{})
	var bg errgroup.Group
	bg.Go(func() error { return p.checkpointer(stop) })
	if p.cfg.progressTo != nil {
		bg.Go(func() error { p.drawProgress(p.cfg.progressTo, from, stop); return nil })
	}
	err := g.Wait()
	close(stop)
	if berr := bg.Wait(); err == nil {
		err = berr
	}
	return err
}

// read validates each row; valid ones go to jobs, the others to the rejects
// report.
func (p *producer) read(ctx context.Context, src *csvsource.Reader, jobs chan<- job) error {
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			p.eof.Store(true)
			return nil
		}
		if recErr, ok := errors.AsType[*csvsource.RecordError](err); ok {
			p.rows.Add(1)
			p.bytes.Store(recErr.End)
			if err := p.rej.add(recErr.Row, recErr.Err.Error(), recErr.Fields); err != nil {
				return err
			}
			p.track.done(recErr.Row, recErr.End)
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p.cfg.File, err)
		}
		p.rows.Add(1)
		p.bytes.Store(rec.End)

		m := src.Map(rec)
		c := customer.Customer{
			Email: m.Email, Name: m.Name, FirstName: m.FirstName, LastName: m.LastName, Phone: m.Phone,
			Attributes: m.Attributes, Source: p.source + "#" + p.fp[:8], Row: rec.Row,
		}.Normalize()
		if err := c.Validate(); err != nil {
			if err := p.rej.add(rec.Row, reason(err), rec.Fields); err != nil {
				return err
			}
			p.track.done(rec.Row, rec.End)
			continue
		}
		body, err := c.Encode()
		if err != nil {
			return err
		}
		msg := amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    p.fp + ":" + strconv.FormatInt(rec.Row, 10),
			Timestamp:    time.Now().UTC(),
			Type:         "customer",
			AppId:        "producer",
			Headers: amqp.Table{
				"x-source":      p.source,
				"x-fingerprint": p.fp,
				"x-row":         rec.Row,
				"x-offset":      rec.Offset,
			},
			Body: body,
		}
		select {
		case jobs <- job{row: rec.Row, end: rec.End, msg: msg}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func reason(err error) string {
	s := err.Error()
	prefix := customer.ErrInvalid.Error() + ": "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

type pending struct {
	job
	dc    *amqp.DeferredConfirmation
	tries int
}

// publish sends jobs on one channel, keeping at most Window of them
// unconfirmed. A row is done only when the broker confirmed it. A row the
// broker refused is sent again; when the channel or connection is lost, the
// broker's answers for the unconfirmed rows are lost with it, so all of them
// are sent again on a new channel (some may be stored twice: consumers treat
// that as a duplicate).
func (p *producer) publish(ctx context.Context, conns *connector, jobs <-chan job) error {
	pub, err := conns.publisher(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	window := make([]pending, 0, p.cfg.Window)

	// resend moves every unconfirmed row to a new channel.
	resend := func(cause error) error {
		all := slices.Clone(window)
		p.logger.Warn("publishing channel lost; sending unconfirmed rows again on a new one", "rows", len(all), "error", cause)
		for tries := 1; ; tries++ {
			if tries > 10 {
				return fmt.Errorf("publish: %d new channels failed in a row: %w", tries-1, cause)
			}
			_ = pub.Close()
			np, err := conns.publisher(ctx)
			if err != nil {
				return fmt.Errorf("%w (lost with %d unconfirmed rows: %w)", err, len(all), cause)
			}
			pub = np
			window = window[:0]
			sent := true
			for _, pd := range all {
				dc, err := pub.Publish(ctx, p.top.Exchange(), rabbit.ImportKey, pd.msg)
				if err != nil {
					sent, cause = false, err
					break
				}
				pd.dc = dc
				window = append(window, pd)
			}
			if sent {
				return nil
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
	}
	send := func(pd pending) error {
		dc, err := pub.Publish(ctx, p.top.Exchange(), rabbit.ImportKey, pd.msg)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("publish row %d: %w", pd.row, err)
			}
			// A failed write means the connection is going, even before the
			// client has noticed: treat it as lost.
			window = append(window, pd)
			return resend(err)
		}
		pd.dc = dc
		window = append(window, pd)
		return nil
	}
	// settle waits for the oldest unconfirmed row.
	settle := func() error {
		pd := window[0]
		err := pub.Wait(ctx, pd.dc, pd.msg.MessageId)
		switch {
		case err == nil:
			window = window[1:]
			p.published.Add(1)
			p.track.done(pd.row, pd.end)
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("publish row %d: %w", pd.row, context.Cause(ctx))
		case pub.Channel().IsClosed():
			return resend(err)
		case errors.Is(err, rabbit.ErrNacked) && pd.tries < p.cfg.PublishRetries:
			window = window[1:]
			p.logger.Warn("broker refused a row; sending it again", "row", pd.row, "try", pd.tries+1)
			pd.tries++
			return send(pd)
		default:
			return fmt.Errorf("publish row %d: %w", pd.row, err)
		}
	}
	for j := range jobs {
		for len(window) >= p.cfg.Window {
			if err := settle(); err != nil {
				return err
			}
		}
		if err := send(pending{job: j}); err != nil {
			return err
		}
	}
	for len(window) > 0 {
		if err := settle(); err != nil {
			return err
		}
	}
	return nil
}

// checkpointer saves the checkpoint and logs progress until stop closes.
func (p *producer) checkpointer(stop <-chan struct{}) error {
	save := time.NewTicker(p.cfg.CheckpointEvery)
	defer save.Stop()
	progress := time.NewTicker(p.cfg.ProgressEvery)
	defer progress.Stop()
	started := time.Now()
	var saved int64 = -1
	for {
		select {
		case <-stop:
			return nil
		case <-save.C:
			if p.cfg.DryRun {
				continue
			}
			row, off := p.track.mark()
			if row == saved {
				continue
			}
			// Rejected rows up to the mark must be on disk before the mark is.
			if err := p.rej.flush(); err != nil {
				return err
			}
			cp := Checkpoint{File: p.cfg.File, Fingerprint: p.fp, Row: row, Offset: off}
			if err := cp.save(p.cfg.Checkpoint); err != nil {
				return err
			}
			saved = row
		case <-progress.C:
			p.logProgress(time.Since(started))
		}
	}
}

func (p *producer) logProgress(elapsed time.Duration) {
	if p.cfg.progressTo != nil {
		return // the bar shows it
	}
	rows, bytes := p.rows.Load(), p.bytes.Load()
	rate := float64(rows) / elapsed.Seconds()
	attrs := []any{
		"rows", rows, "published", p.published.Load(), "rejected", p.rej.total(),
		"bytes", bytes, "rows_per_second", int64(rate),
	}
	if p.size > 0 && bytes > 0 {
		pct := float64(bytes) / float64(p.size)
		attrs = append(attrs, "percent", fmt.Sprintf("%.1f", 100*pct))
		if pct > 0 && pct < 1 {
			eta := time.Duration(float64(elapsed) * (1 - pct) / pct)
			attrs = append(attrs, "eta", eta.Round(time.Second).String())
		}
	}
	p.logger.Info("progress", attrs...)
}
