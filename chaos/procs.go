package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/custimport/custimport/libs/process"
)

// start runs one of the built binaries with its log in the log folder,
// appended to by every generation of the same name so that a restart's
// story reads in order. The end of ctx stops it: SIGTERM, then SIGKILL after
// the default grace period.
func start(ctx context.Context, logger *slog.Logger, logDir, name, bin string, env, args []string, captureStdout bool) (*process.Process, error) {
	p, err := process.Start(ctx, process.Spec{
		Name: name, Bin: bin, Args: args, Env: env,
		Log: filepath.Join(logDir, name+".log"), CaptureStdout: captureStdout,
	})
	if err != nil {
		return nil, err
	}
	logger.Debug("started", "process", name, "pid", p.Pid())
	return p, nil
}

// exit is a process that ended on its own: what the lead must look at.
type exit struct {
	Process string
	Err     string
	At      time.Time
}

// fleet keeps Consumers consumer processes running: one killed on purpose
// is restarted at once; one that exits on its own is recorded and restarted
// after a pause, as a supervisor (compose's restart policy) would.
type fleet struct {
	logger *slog.Logger
	bin    string
	logDir string
	env    []string

	mu      sync.Mutex
	current []*process.Process
	exits   []exit
	kills   int
	starts  int
}

// run supervises len(f.current) consumers until ctx ends.
func (f *fleet) run(ctx context.Context) error {
	n := len(f.current)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = f.supervise(ctx, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (f *fleet) supervise(ctx context.Context, i int) error {
	name := fmt.Sprintf("consumer-%d", i+1)
	for gen := 1; ; gen++ {
		// Port 0: the consumers of one host must not fight over the
		// metrics port.
		env := slices.Concat(f.env, []string{fmt.Sprintf("CONSUMER_NAME=c%d-g%d", i+1, gen), "CONSUMER_HTTP_ADDR=127.0.0.1:0"})
		p, err := start(ctx, f.logger, f.logDir, name, f.bin, env, nil, false)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.current[i] = p
		f.starts++
		f.mu.Unlock()
		<-p.Done()
		if ctx.Err() != nil {
			if !p.ExitedCleanly() && !p.KilledOnPurpose() {
				f.record(exit{Process: name, Err: fmt.Sprint("after SIGTERM: ", p.Err()), At: time.Now()})
			}
			return nil
		}
		pause := 100 * time.Millisecond
		if !p.KilledOnPurpose() {
			f.record(exit{Process: fmt.Sprintf("%s (c%d-g%d)", name, i+1, gen), Err: fmt.Sprint(p.Err()), At: time.Now()})
			f.logger.Warn("consumer exited on its own; restarting it", "process", name, "generation", gen, "err", p.Err())
			pause = time.Second
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fleet) record(e exit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exits = append(f.exits, e)
}

// kill SIGKILLs consumer i, which its supervisor restarts.
func (f *fleet) kill(i int) bool {
	f.mu.Lock()
	p := f.current[i]
	if p != nil {
		f.kills++
	}
	f.mu.Unlock()
	if p == nil {
		return false
	}
	p.Kill()
	return true
}

func (f *fleet) unexpectedExits() []exit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]exit(nil), f.exits...)
}
