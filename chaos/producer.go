package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/process"
)

// producerSummary is the producer's stdout.
type producerSummary struct {
	Rows        int64  `json:"rows"`
	Published   int64  `json:"published"`
	Rejected    int64  `json:"rejected"`
	ResumedFrom int64  `json:"resumed_from_row"`
	Complete    bool   `json:"complete"`
	Error       string `json:"error"`
}

// importRun is what the producer runs of one file came to.
type importRun struct {
	File      string
	Rejects   string
	Runs      int
	Killed    int // SIGKILLed on purpose
	Summaries []producerSummary
	Exits     []exit // exits that were not asked for
	Complete  bool
}

func (r importRun) sum() (rows, published, rejected int64) {
	for _, s := range r.Summaries {
		rows += s.Rows
		published += s.Published
		rejected += s.Rejected
	}
	return rows, published, rejected
}

// maxProducerRuns bounds the restarts of a producer that keeps failing.
const maxProducerRuns = 30

// importFile runs the producer on file until a run completes, restarting it
// with --resume after each exit. When killAt > 0 the first run is SIGKILLed
// once its checkpoint passes that row.
func (h *harness) importFile(ctx context.Context, name, file string, killAt int64) (importRun, error) {
	dir := filepath.Join(h.work, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return importRun{}, fmt.Errorf("make %s: %w", dir, err)
	}
	res := importRun{File: file, Rejects: filepath.Join(dir, "rejects.csv")}
	checkpoint := filepath.Join(dir, "checkpoint")
	for res.Runs < maxProducerRuns {
		args := []string{
			"--file", file, "--parallel", "2", "--rejects", res.Rejects, "--checkpoint", checkpoint,
			"--checkpoint-every", "100ms", "--progress-every", "2s",
		}
		if res.Runs > 0 {
			args = append(args, "--resume")
		}
		res.Runs++
		p, err := start(ctx, h.logger, h.logDir, name, filepath.Join(h.bin, "producer"), h.env, args, true)
		if err != nil {
			return res, err
		}
		if killAt > 0 {
			if h.killAtCheckpoint(ctx, p, checkpoint, killAt) {
				res.Killed++
			}
			killAt = 0
		}
		<-p.Done()
		if ctx.Err() != nil {
			return res, fmt.Errorf("producer on %s: %w", name, ctx.Err())
		}
		var s producerSummary
		if out := strings.TrimSpace(string(p.Stdout())); out != "" {
			if err := json.Unmarshal([]byte(out), &s); err != nil {
				h.logger.Warn("producer summary unreadable", "file", name, "stdout", out, "err", err)
			} else {
				res.Summaries = append(res.Summaries, s)
			}
		}
		switch {
		case p.KilledOnPurpose():
			h.logger.Info("producer killed mid-file; resuming", "file", name)
		case p.Err() == nil && s.Complete:
			res.Complete = true
			h.logger.Info("producer done", "file", name, "runs", res.Runs, "rows", s.Rows, "published", s.Published, "rejected", s.Rejected)
			return res, nil
		default:
			why := s.Error
			if why == "" {
				why = fmt.Sprint(p.Err())
			}
			res.Exits = append(res.Exits, exit{Process: fmt.Sprintf("%s run %d", name, res.Runs), Err: why, At: time.Now()})
			h.logger.Warn("producer exited on its own; resuming", "file", name, "run", res.Runs, "err", p.Err(), "summary_error", s.Error)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return res, fmt.Errorf("producer on %s: %w", name, ctx.Err())
			}
		}
	}
	return res, fmt.Errorf("producer on %s: no complete run in %d tries", name, maxProducerRuns)
}

// killAtCheckpoint SIGKILLs p once its checkpoint reaches row, and reports
// whether it did (a fast producer may finish first).
func (h *harness) killAtCheckpoint(ctx context.Context, p *process.Process, path string, row int64) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.Done():
			h.logger.Warn("producer finished before the kill point; no producer kill this run", "kill_at_row", row)
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var cp struct {
			Row int64 `json:"row"`
		}
		if json.Unmarshal(b, &cp) != nil || cp.Row < row {
			continue
		}
		if !p.Kill() {
			h.logger.Warn("producer finished before the kill point; no producer kill this run", "kill_at_row", row)
			return false
		}
		h.logger.Info("fault: SIGKILL producer mid-file", "checkpoint_row", cp.Row)
		return true
	}
}

// killPoint picks the row after which the producer is killed: somewhere
// in the first two thirds of the file.
func killPoint(rng *rand.Rand, rows int) int64 {
	return int64(float64(rows) * (0.15 + 0.5*rng.Float64()))
}

var errChecksFailed = errors.New("exactly-once checks failed")
