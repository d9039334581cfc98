package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custimport/custimport/libs/cli"
	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/process"
)

// refusedRows is the size of the file whose customers the CRM refuses.
const refusedRows = 20

// run is chaos's body: a failed check exits 1, a run that could not be made
// (a service down, a bad flag) exits 2.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := runChaos(ctx, args, getenv, stdout, stderr)
	if err != nil && !errors.Is(err, errChecksFailed) && !errors.Is(err, flag.ErrHelp) {
		return &cli.ExitError{Code: 2, Err: err}
	}
	return err
}

func runChaos(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	logger.Info("chaos run", "seed", cfg.Seed, "rows", cfg.Rows, "consumers", cfg.Consumers, "faults", cfg.Faults,
		"duration", cfg.Duration, "short", cfg.Short)

	work := cfg.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "chaos-"); err != nil {
			return fmt.Errorf("make work folder: %w", err)
		}
	} else if err := os.MkdirAll(work, 0o750); err != nil {
		return fmt.Errorf("make work folder: %w", err)
	}
	h := &harness{cfg: cfg, logger: logger, work: work}
	if err := h.build(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	passed := false
	defer func() {
		h.teardown(cfg.Keep)
		if passed && !cfg.Keep && cfg.WorkDir == "" {
			_ = os.RemoveAll(work)
		} else {
			logger.Info("logs and data kept", "work_dir", work, "logs", h.logDir)
		}
	}()
	if err := h.setup(runCtx); err != nil {
		return err
	}

	o, err := h.chaos(runCtx, ctx)
	if err != nil {
		return err
	}
	cs := o.checks()
	if err := writeTable(stdout, o, cs); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	passed = true
	for _, c := range cs {
		if !c.OK {
			passed = false
			logger.Error("check failed", "check", c.Name, "detail", c.Detail)
		}
	}
	if !passed {
		h.logEvidence(failingEmails(cs))
		return fmt.Errorf("%w (seed %d; logs in %s)", errChecksFailed, cfg.Seed, h.logDir)
	}
	return nil
}

// chaos runs the import under faults and gathers what the checks need.
// runCtx bounds the run; ctx (the signal context) stops the processes.
func (h *harness) chaos(runCtx, ctx context.Context) (*observed, error) {
	cfg := h.cfg
	seed := uint64(cfg.Seed) //nolint:gosec // G115: validated >= 0
	rng := rand.New(rand.NewPCG(seed, seed^0x5DEECE66D))

	o := &observed{}
	mainFile := filepath.Join(h.work, "customers.csv")
	refusedFile := filepath.Join(h.work, "refused.csv")
	var err error
	if o.Gen, err = h.generate(runCtx, mainFile); err != nil {
		return nil, err
	}
	if err := writeRejectFile(refusedFile, refusedRows); err != nil {
		return nil, err
	}
	if o.Main, err = readExpected(mainFile); err != nil {
		return nil, err
	}
	if o.Refused, err = readExpected(refusedFile); err != nil {
		return nil, err
	}
	want := int64(len(o.Main.Emails) + len(o.Refused.Emails))
	h.logger.Info("data", "file", mainFile, "rows", o.Main.Rows, "invalid", len(o.Main.Invalid), "unique_emails", len(o.Main.Emails),
		"refused_emails", len(o.Refused.Emails))

	procCtx, stopProcs := context.WithCancel(ctx)
	defer stopProcs()
	f := &fleet{logger: h.logger, bin: filepath.Join(h.bin, "consumer"), logDir: h.logDir, env: h.env, current: make([]*process.Process, cfg.Consumers)}
	var procs sync.WaitGroup
	procs.Go(func() {
		if err := f.run(procCtx); err != nil {
			h.logger.Error("consumers", "err", err)
		}
	})

	killAt := killPoint(rng, cfg.Rows)
	var producerDone atomic.Bool
	var prodErr error
	procs.Go(func() {
		defer producerDone.Store(true)
		if o.RefuseRun, prodErr = h.importFile(runCtx, "producer-refused", refusedFile, 0); prodErr != nil {
			return
		}
		o.MainRun, prodErr = h.importFile(runCtx, "producer", mainFile, killAt)
	})

	// Faults are paced by the import's progress (see injector); the gaps
	// only keep them apart.
	gapMin, gapMax := 200*time.Millisecond, time.Second
	if cfg.Short {
		gapMin, gapMax = 100*time.Millisecond, 500*time.Millisecond
	}
	inj := &injector{
		h: h, fleet: f, rng: rand.New(rand.NewPCG(seed+1, seed^0xC0FFEE)), n: cfg.Faults, gapMin: gapMin, gapMax: gapMax,
		done: func(ctx context.Context) (float64, error) {
			var n int64
			err := h.pool.QueryRow(ctx, `SELECT count(*) FROM customers WHERE crm_state <> 'pending'`).Scan(&n)
			return float64(n) / float64(want), err
		},
	}
	chaosCtx, stopChaos := context.WithCancel(runCtx)
	var chaos sync.WaitGroup
	chaos.Go(func() { inj.run(chaosCtx) })

	// Faults stop when the pipeline went quiet or all were injected; then
	// it must settle without them.
	last, err := h.waitQuiet(runCtx, want, producerDone.Load)
	stopChaos()
	chaos.Wait()
	if err == nil {
		h.logger.Info("quiet; faults stopped, waiting for it to settle")
		last, err = h.waitQuiet(runCtx, want, producerDone.Load)
	}
	o.Converged = err == nil
	o.Last = last
	if !o.Converged {
		h.logger.Error("did not settle before the --duration bound", "err", err)
	}

	stopProcs()
	procs.Wait()
	if prodErr != nil {
		h.logger.Error("producer", "err", prodErr)
	}
	o.Faults = inj.counts()
	o.Planned = cfg.Faults
	if h.cluster != nil {
		o.PlannedStops = clusterStops
	}
	o.Kills = f.kills
	o.Exits = append(append(append(o.Exits, o.RefuseRun.Exits...), o.MainRun.Exits...), f.unexpectedExits()...)

	gather, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if o.PG, o.PGRows, err = h.customers(gather); err != nil {
		return nil, err
	}
	var st crmmock.Stats
	if err := h.crmGet(gather, "/stats?emails=1", &st); err != nil {
		return nil, err
	}
	o.CRM = st
	if o.Dead, err = h.deadLetters(gather); err != nil {
		return nil, err
	}
	if o.MainRun.Rejects != "" {
		if o.Reported, o.Damage, err = readRejectsReport(o.MainRun.Rejects); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// logEvidence logs, for each email, the lines of the process logs that
// name it.
func (h *harness) logEvidence(emails []string) {
	files, _ := filepath.Glob(filepath.Join(h.logDir, "*.log"))
	for _, e := range emails {
		found := 0
		for _, path := range files {
			found += grepFile(h.logger, path, e, 8-found)
		}
		if found == 0 {
			h.logger.Info("evidence: no log line names this email", "email", e)
		}
	}
}

func grepFile(logger *slog.Logger, path, needle string, limit int) int {
	if limit <= 0 {
		return 0
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() && n < limit {
		if line := sc.Text(); strings.Contains(strings.ToLower(line), needle) {
			logger.Info("evidence", "email", needle, "log", filepath.Base(path), "line", line)
			n++
		}
	}
	return n
}
