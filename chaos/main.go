// Command chaos imports a generated customer file through the real producer,
// consumers and mockcrm while it kills processes, cuts the connections to
// RabbitMQ and PostgreSQL and makes the CRM fail, then checks that every
// valid customer is in Postgres once and was created in the CRM once.
//
//	go run ./chaos                 # 50,000 rows, 3 consumers, about 16 faults
//	go run ./chaos --short         # 5,000 rows, fewer faults, under a minute
//	go run ./chaos --seed 7 --keep # replay a run and keep its schema and queues
//
// Logs go to stderr, the result table to stdout; the exit status is non-zero
// when a check fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errChecksFailed):
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
}
