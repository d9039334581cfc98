package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// replay moves the dead letters present when it starts back to the work
// queue, those with the given reason only when --reason is set, at most
// --limit of them (deadletter.Replay). The customer of each replayed message
// goes back to pending with its attempts cleared. Dead letters it leaves go
// back to the end of the dead-letter queue unchanged. It reports how many it
// moved.
func replay(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	openCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	store, err := pgstore.Open(openCtx, cfg.store())
	cancel()
	if err != nil {
		return err
	}
	defer store.Close()
	conn, err := rabbit.Dial(ctx, cfg.AMQPURL, "consumer replay "+cfg.Name)
	if err != nil {
		return fmt.Errorf("%w: is RabbitMQ running? (make infra)", err)
	}
	defer conn.Close()
	res, err := deadletter.Replay(ctx, conn, cfg.topology(), store, deadletter.ReplayOptions{Reason: cfg.ReplayReason, Limit: cfg.ReplayLimit})
	if err != nil {
		return err
	}
	logger.Info("replay done", "replayed", res.Replayed, "kept", res.Kept, "by_reason", fmt.Sprint(res.ByReason))
	what := "dead letters"
	if cfg.ReplayReason != "" {
		what = "dead letters with reason " + cfg.ReplayReason
	}
	_, err = fmt.Fprintf(stdout, "replayed %d %s to %s; %d left in %s\n", res.Replayed, what, res.Queue, res.Left, res.DeadQueue)
	return err
}
