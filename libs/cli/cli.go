// Package cli is the entry point shared by the project's commands: a context
// cancelled by SIGINT or SIGTERM, one line on stderr for an error, and an
// exit status.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run is a command's body: it runs until done or ctx ends, reads flags from
// args and the environment through getenv, writes results to stdout and logs
// to stderr.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// ExitError is an error with an exit status of its own (other errors exit 1).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs run with the process's arguments, environment and streams, and
// exits with its status.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(name, err, os.Stderr))
}

// ExitCode is the exit status for err (0 for none, or for --help), after
// writing it to stderr as "name: err".
func ExitCode(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	return 1
}
