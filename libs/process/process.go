// Package process runs the project's binaries as child processes, for the
// harnesses that drive them from outside (e2e tests, make chaos, make
// bench): build them, start one with its output in a log, free a port for
// it, wait for it to answer, and stop it gracefully (SIGTERM, then SIGKILL
// after a grace period), or kill it on purpose.
package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStopGrace is how long a process has after SIGTERM before SIGKILL
// when Spec.StopGrace is zero: the consumer's own shutdown bound is 30 s.
const DefaultStopGrace = 30 * time.Second

// Spec says what to start.
type Spec struct {
	// Name names the process in errors and in its log's markers.
	Name string
	// Bin is the executable's path.
	Bin  string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// Log is a file that gets stdout and stderr, appended to, with a line
	// marking each start and exit, so that the generations of a restarted
	// process read in order. When empty, Output gets them.
	Log string
	// Output gets stdout and stderr when Log is empty (io.Discard if nil).
	Output io.Writer
	// CaptureStdout keeps stdout apart, for Stdout (a summary printed
	// there); stderr still goes to Log or Output.
	CaptureStdout bool
	// StopGrace is how long Stop, or the end of Start's context, waits
	// after SIGTERM before SIGKILL. Default DefaultStopGrace.
	StopGrace time.Duration
}

// Process is a started binary.
type Process struct {
	name   string
	log    string
	cmd    *exec.Cmd
	grace  time.Duration
	stdout *bytes.Buffer // nil unless captured
	done   chan struct{} // closed once it exited and err is set
	err    error

	mu     sync.Mutex
	killed bool // SIGKILLed on purpose
}

// Start starts s.Bin. When ctx ends the process gets SIGTERM, then SIGKILL
// after the grace period; pass context.WithoutCancel(ctx) to stop it only
// with Stop (a test's cleanup, after t.Context() has ended).
func Start(ctx context.Context, s Spec) (*Process, error) {
	grace := s.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	out := io.Writer(io.Discard)
	var logf *os.File
	if s.Log != "" {
		f, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open log of %s: %w", s.Name, err)
		}
		logf, out = f, f
		fmt.Fprintf(f, "=== start %s %v at %s\n", s.Name, s.Args, time.Now().Format(time.RFC3339Nano))
	} else if s.Output != nil {
		out = s.Output
	}
	cmd := exec.CommandContext(ctx, s.Bin, s.Args...) //nolint:gosec // G204: the harness's own binaries
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = grace
	cmd.Stdout, cmd.Stderr = out, out
	p := &Process{name: s.Name, log: s.Log, cmd: cmd, grace: grace, done: make(chan struct{})}
	if s.CaptureStdout {
		p.stdout = &bytes.Buffer{}
		cmd.Stdout = p.stdout
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			_ = logf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if logf != nil {
			fmt.Fprintf(logf, "=== %s exited at %s: %v\n", s.Name, time.Now().Format(time.RFC3339Nano), p.err)
			_ = logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Name is the Spec's name.
func (p *Process) Name() string { return p.name }

// Log is the path of its log file, "" without one.
func (p *Process) Log() string { return p.log }

// Pid is its process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what waiting for it returned, once Done is closed: nil for a zero
// exit status. After the end of Start's context it is that context's error
// even for a clean exit: ask ExitedCleanly.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitedCleanly reports an exit with status 0.
func (p *Process) ExitedCleanly() bool {
	return p.Exited() && p.cmd.ProcessState != nil && p.cmd.ProcessState.Success()
}

// Stdout is what it printed on stdout, when Spec.CaptureStdout; read it
// once the process has exited.
func (p *Process) Stdout() []byte {
	if p.stdout == nil {
		return nil
	}
	<-p.done
	return p.stdout.Bytes()
}

// Wait waits for the process to exit by itself; an exit status other than 0
// is an error carrying the end of its log. When ctx ends first the process
// is stopped.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return p.exitError(p.err)
		}
		return nil
	case <-ctx.Done():
		_ = p.Stop()
		return fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
}

// ErrNotStopped says that a process did not stop within its grace period
// after SIGTERM and was killed.
var ErrNotStopped = errors.New("did not stop within its grace period after SIGTERM; killed")

// Stop sends SIGTERM and waits for the exit; a process that has not exited
// after the grace period is killed. It returns nil for a clean exit, the
// exit status otherwise, ErrNotStopped if it had to be killed. Stopping a
// process that has exited returns nil.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(p.grace)
	defer timer.Stop()
	select {
	case <-p.done:
		if p.err != nil && !p.ExitedCleanly() {
			return p.exitError(fmt.Errorf("after SIGTERM: %w", p.err))
		}
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s %w", p.name, ErrNotStopped)
	}
}

// Kill sends SIGKILL on purpose (a fault a harness injects) and waits for
// the exit. It reports false when the process had exited already.
func (p *Process) Kill() bool {
	if p.Exited() {
		return false
	}
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
	return true
}

// KilledOnPurpose reports whether Kill ended it: its exit is no finding.
func (p *Process) KilledOnPurpose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// Usage is what the kernel counted for an exited process.
type Usage struct {
	PeakRSS int64   // bytes
	CPU     float64 // user + system seconds
}

// Usage returns the peak RSS and CPU time of the exited process (zero
// while it runs).
func (p *Process) Usage() Usage {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return Usage{}
	}
	st := p.cmd.ProcessState
	u := Usage{CPU: (st.UserTime() + st.SystemTime()).Seconds()}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		u.PeakRSS = ru.Maxrss * 1024 // KiB on Linux
	}
	return u
}

func (p *Process) exitError(err error) error {
	if p.log == "" {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return fmt.Errorf("%s: %w (log: %s)\n%s", p.name, err, p.log, Tail(p.log, 2000))
}

// Tail returns the last n bytes of a file, "" when it cannot be read: the
// evidence an error message quotes.
func Tail(path string, n int64) string {
	f, err := os.Open(path) //nolint:gosec // G304: a log file the harness named
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// FreeAddr returns a loopback address whose port was free a moment ago, for
// a process that must be told its port before it starts (mockcrm's --addr).
// Where the process can report what it bound, prefer port 0.
func FreeAddr(ctx context.Context) (string, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// WaitHTTP polls url until it answers 200, the process exits (when p is
// not nil), or within has passed.
func WaitHTTP(ctx context.Context, p *Process, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var done <-chan struct{}
	if p != nil {
		done = p.done
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", url, err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return p.exitError(fmt.Errorf("exited before %s answered: %w", url, p.err))
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %s", url, within)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Build compiles the module's packages (./producer, ./consumer, ...) into
// dir, from the module's root, so a harness runs from anywhere inside the
// repository.
func Build(ctx context.Context, dir string, pkgs ...string) error {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return err
	}
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // G204: our packages, a folder of our own
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// ModuleRoot is the folder of the go.mod that holds the working directory.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the custimport module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}
