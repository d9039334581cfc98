// Package importer is the import itself, for any binary that runs one (the
// producer's command line, the web service's uploads): it streams a customer
// CSV, validates each row, publishes each valid row as one persistent,
// broker-confirmed message, writes the rejected rows to a report, and saves a
// checkpoint so that a stopped import can be resumed.
//
// Run does one import and returns its Summary; Config.OnProgress is told the
// counts while it runs. A file whose columns name no email fails with an
// error wrapping csvsource.ErrNoEmailColumn.
package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/rabbit"
)

// ErrAllRejected means the file had rows and every one was rejected: it is
// most likely not read the way it was written (columns, delimiter, line
// ends), and the run ends with an error although it read the whole file.
var ErrAllRejected = errors.New("every row was rejected")

// Config says what to import and how. Field comments give defaults.
type Config struct {
	// File is the CSV to import. Required.
	File string
	// Source names the file in messages and logs. Default: File's base name.
	Source string
	// ImportID, when set, is carried by every published message (the body's
	// import_id and the x-import-id header), so that consumers can tie each
	// customer to its import. Default "".
	ImportID string
	// CSV says how to read the file (header, columns, delimiter, encoding,
	// record limit). Its Start is decided by Run from the checkpoint.
	CSV csvsource.Config
	// Parallel is the number of publishing channels. Default 4.
	Parallel int
	// Window bounds the unconfirmed messages per channel. Default 256.
	Window int
	// StateDir, when set, holds the default rejects report and checkpoint
	// instead of File's folder (which may be read-only); it is created if
	// missing.
	StateDir string
	// Rejects is the rejects report. Default <StateDir or File's
	// folder>/<File's base name>.rejects.csv.
	Rejects string
	// Checkpoint is where progress is saved. Default as Rejects, ending in
	// .checkpoint.
	Checkpoint string
	// Resume continues from Checkpoint.
	Resume bool
	// DryRun validates and writes the rejects report without connecting
	// or publishing.
	DryRun bool
	// AMQPURL is the broker. Required unless DryRun.
	AMQPURL string
	// Topology is declared on every connection; it must match the
	// consumers'. Default rabbit.Topology{}.WithDefaults().
	Topology rabbit.Topology
	// PublishRetries is how many times a nacked message is sent again
	// before the run fails. Default 0.
	PublishRetries int
	// ReconnectTimeout is how long a lost broker connection is retried
	// before the run stops (resumable). Default 2m.
	ReconnectTimeout time.Duration
	// CheckpointEvery is how often the checkpoint is saved. Default 1s.
	CheckpointEvery time.Duration
	// ProgressEvery is how often OnProgress is called, or progress logged
	// when OnProgress is nil. Default 5s.
	ProgressEvery time.Duration
	// OnProgress, when set, is called every ProgressEvery from one
	// goroutine, once before the first row and once more when the run ends
	// (with Done set). It must return quickly. When nil, progress is
	// logged at info level instead.
	OnProgress func(Progress)
	// AppID names the application in the messages' app-id and the broker
	// connection's name. Default "producer".
	AppID string
	// Logger receives the run's logs. Default: discarded.
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.Source == "" {
		c.Source = filepath.Base(c.File)
	}
	base := c.File
	if c.StateDir != "" {
		base = filepath.Join(c.StateDir, filepath.Base(c.File))
	}
	if c.Rejects == "" {
		c.Rejects = base + ".rejects.csv"
	}
	if c.Checkpoint == "" {
		c.Checkpoint = base + ".checkpoint"
	}
	if c.Parallel == 0 {
		c.Parallel = 4
	}
	if c.Window == 0 {
		c.Window = 256
	}
	c.Topology = c.Topology.WithDefaults()
	if c.ReconnectTimeout == 0 {
		c.ReconnectTimeout = 2 * time.Minute
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = time.Second
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 5 * time.Second
	}
	if c.AppID == "" {
		c.AppID = "producer"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.File == "":
		return errors.New("importer.Config.File is required")
	case c.Parallel < 1:
		return fmt.Errorf("importer.Config.Parallel %d: want 1 or more", c.Parallel)
	case c.Window < 1:
		return fmt.Errorf("importer.Config.Window %d: want 1 or more", c.Window)
	case c.PublishRetries < 0:
		return fmt.Errorf("importer.Config.PublishRetries %d: want 0 or more", c.PublishRetries)
	case c.ReconnectTimeout < 0 || c.CheckpointEvery < 0 || c.ProgressEvery < 0:
		return errors.New("importer.Config: ReconnectTimeout, CheckpointEvery and ProgressEvery must be positive")
	case c.Rejects == c.File:
		return errors.New("the rejects report must not be the input file")
	case c.Checkpoint == c.File:
		return errors.New("the checkpoint must not be the input file")
	}
	return nil
}

// Summary is what an import did. The producer prints it as one JSON object;
// that of a dry run has valid instead of published, and no checkpoint_file
// (it writes none).
type Summary struct {
	File      string `json:"file"`
	ImportID  string `json:"import_id,omitempty"`
	Rows      int64  `json:"rows"`
	Published int64  `json:"published"`
	// Valid is the rows a dry run found valid (and did not publish).
	Valid       int64   `json:"valid,omitempty"`
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

// MarshalJSON leaves out of a dry run's summary what it did not do.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	if !s.DryRun {
		return json.Marshal(plain(s))
	}
	s.Checkpoint = ""
	return json.Marshal(struct {
		plain
		Valid      int64     `json:"valid"`
		Published  *struct{} `json:"published,omitempty"`
		Checkpoint *struct{} `json:"checkpoint_file,omitempty"`
	}{plain: plain(s), Valid: s.Valid})
}

// Progress is a snapshot of a running import.
type Progress struct {
	// Rows read so far in this run, valid or not.
	Rows int64
	// Published rows, confirmed by the broker.
	Published int64
	// Valid rows of a dry run (nothing is sent).
	Valid int64
	// Rejected rows, written to the rejects report.
	Rejected int64
	// Bytes of the file read in this run, of Total (the bytes left to read
	// when the run started; -1 when the size is not known).
	Bytes, Total int64
	// Elapsed since the run started reading.
	Elapsed time.Duration
	// DryRun is the run's Config.DryRun.
	DryRun bool
	// Done is set on the last call, when the run has ended.
	Done bool
}

// RowsPerSec is the run's average rate.
func (p Progress) RowsPerSec() float64 {
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.Rows) / s
	}
	return 0
}

// run is one import in progress.
type run struct {
	cfg   Config
	track *tracker
	rej   *rejects
	names columnNames

	fp        string // the file's fingerprint
	start     csvsource.Position
	size      int64
	started   time.Time
	rows      atomic.Int64
	published atomic.Int64
	valid     atomic.Int64 // dry run only
	bytes     atomic.Int64
	eof       atomic.Bool
}

// Run does one import. It returns the summary whenever it got as far as
// reading the file, with an error too when the import did not complete; a
// checkpoint then says where --resume (Config.Resume) continues.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
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

	lk, err := acquireLock(cfg.Checkpoint+".lock", logger)
	if err != nil {
		return nil, err
	}
	defer lk.release()

	start, done, err := startPosition(cfg, fp)
	if err != nil {
		return nil, err
	}
	sum := &Summary{File: cfg.File, ImportID: cfg.ImportID, Rejects: cfg.Rejects, Checkpoint: cfg.Checkpoint, DryRun: cfg.DryRun, ResumedFrom: start.Row}
	if done {
		sum.Complete = true
		return sum, nil
	}

	csvCfg := cfg.CSV
	csvCfg.Start = start
	src, err := csvsource.NewReader(f, csvCfg)
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
		return nil, fmt.Errorf("%w among %v: name the columns with --columns (for example --columns name,email)", csvsource.ErrNoEmailColumn, layout.Columns)
	}

	rej, err := openRejects(cfg.Rejects, start.Row > 0, layout.Columns)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, track: newTracker(start.Row, start.Offset), rej: rej, names: newColumnNames(layout), fp: fp, start: start, size: st.Size()}
	r.bytes.Store(start.Offset)

	err = r.pipeline(ctx, src)
	if cerr := rej.close(); err == nil {
		err = cerr
	}
	// The final checkpoint: complete only when every row was read and
	// confirmed; otherwise the mark --resume continues from.
	row, off := r.track.mark()
	complete := err == nil && r.eof.Load()
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
	sum.Rows = r.rows.Load()
	sum.Published = r.published.Load()
	sum.Valid = r.valid.Load()
	sum.Rejected = rej.total()
	sum.Bytes = r.bytes.Load() - start.Offset
	sum.Elapsed = elapsed.Seconds()
	if s := elapsed.Seconds(); s > 0 {
		sum.RowsPerSec = float64(sum.Rows) / s
	}
	sum.Complete = complete
	if err == nil && sum.Rows > 0 && sum.Rejected == sum.Rows {
		err = fmt.Errorf("%w (%d read; the first, %s): nothing was published; see the rejects report %s",
			ErrAllRejected, sum.Rows, rej.firstReason(), cfg.Rejects)
	}
	return sum, err
}

// startPosition decides where reading starts: the checkpoint's mark with
// Resume, the first row otherwise. done reports a checkpoint of a run that
// already completed.
func startPosition(cfg Config, fp string) (csvsource.Position, bool, error) {
	logger := cfg.Logger
	cp, found, err := LoadCheckpoint(cfg.Checkpoint)
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

// progress is the snapshot OnProgress gets.
func (r *run) progress(done bool) Progress {
	total := r.size - r.start.Offset
	if r.size <= 0 {
		total = -1
	}
	return Progress{
		Rows: r.rows.Load(), Published: r.published.Load(), Valid: r.valid.Load(), Rejected: r.rej.total(),
		Bytes: r.bytes.Load() - r.start.Offset, Total: total,
		Elapsed: time.Since(r.started), DryRun: r.cfg.DryRun, Done: done,
	}
}

func (r *run) logProgress() {
	p := r.progress(false)
	done, count := "published", p.Published
	if p.DryRun {
		done, count = "valid", p.Valid
	}
	attrs := []any{
		"rows", p.Rows, done, count, "rejected", p.Rejected,
		"bytes", r.bytes.Load(), "rows_per_second", int64(p.RowsPerSec()),
	}
	if r.size > 0 && p.Bytes > 0 {
		pct := float64(r.bytes.Load()) / float64(r.size)
		attrs = append(attrs, "percent", fmt.Sprintf("%.1f", 100*pct))
		if frac := float64(p.Bytes) / float64(p.Total); frac > 0 && frac < 1 {
			eta := time.Duration(float64(p.Elapsed) * (1 - frac) / frac)
			attrs = append(attrs, "eta", eta.Round(time.Second).String())
		}
	}
	r.cfg.Logger.Info("progress", attrs...)
}
