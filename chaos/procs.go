package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process has to stop after SIGTERM before it is
// killed.
const stopGrace = 30 * time.Second

// process is one started binary. Its stdout and stderr go to a log file
// (stdout to a buffer instead when asked), shared by every generation of
// the same name so that a restart's story reads in order.
type process struct {
	name   string
	cmd    *exec.Cmd
	stdout *bytes.Buffer // nil unless captured
	done   chan struct{} // closed once it exited
	err    error         // its exit status, once done is closed

	mu     sync.Mutex
	killed bool // SIGKILLed on purpose
}

// spawn starts bin. Cancelling ctx sends SIGTERM, then SIGKILL after
// stopGrace. The log file is appended to.
func spawn(ctx context.Context, logger *slog.Logger, name, bin, logPath string, env, args []string, captureStdout bool) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	fmt.Fprintf(logf, "=== chaos: start %s %v at %s\n", name, args, time.Now().Format(time.RFC3339Nano))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = logf
	cmd.Stdout = logf
	if captureStdout {
		p.stdout = &bytes.Buffer{}
		cmd.Stdout = p.stdout
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logger.Debug("started", "process", name, "pid", cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== chaos: %s exited at %s: %v\n", name, time.Now().Format(time.RFC3339Nano), p.err)
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL, on purpose: the exit is not a finding.
func (p *process) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
}

// exitedCleanly reports a zero exit status. After SIGTERM Wait returns the
// context's error even then, so p.err alone does not tell.
func (p *process) exitedCleanly() bool {
	return p.cmd.ProcessState != nil && p.cmd.ProcessState.Success()
}

func (p *process) killedOnPurpose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
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
	current []*process
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
		p, err := spawn(ctx, f.logger, name, f.bin, filepath.Join(f.logDir, name+".log"), env, nil, false)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.current[i] = p
		f.starts++
		f.mu.Unlock()
		<-p.done
		if ctx.Err() != nil {
			if !p.exitedCleanly() && !p.killedOnPurpose() {
				f.record(exit{Process: name, Err: "after SIGTERM: " + p.err.Error(), At: time.Now()})
			}
			return nil
		}
		pause := 100 * time.Millisecond
		if !p.killedOnPurpose() {
			f.record(exit{Process: fmt.Sprintf("%s (c%d-g%d)", name, i+1, gen), Err: fmt.Sprint(p.err), At: time.Now()})
			f.logger.Warn("consumer exited on its own; restarting it", "process", name, "generation", gen, "err", p.err)
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
	p.kill()
	return true
}

func (f *fleet) unexpectedExits() []exit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]exit(nil), f.exits...)
}

// tailFile returns the last n bytes of a file, for evidence.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
