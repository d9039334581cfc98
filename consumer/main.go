// Command consumer takes customers off RabbitMQ, stores each once in
// PostgreSQL and creates each once in the CRM. Run as many as you like, on
// any hosts. `consumer migrate` applies the database migrations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/custimport/custimport/libs/buildinfo"
)

// version is stamped by release builds: -ldflags "-X main.version=v1.2.3".
var version = buildinfo.Dev

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 1
	}
}
