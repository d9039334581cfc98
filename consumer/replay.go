package main

import (
	"context"
	"fmt"
	"io"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

const replaySummary = `consumer replay moves the dead letters present when it starts back to the
work queue (after a fix), and their customers back to pending with their
attempts cleared; it says how many. Dead letters it leaves stay in the
dead-letter queue unchanged.

Usage:
  consumer replay [flags]`

// replayConfig is what `consumer replay` is told.
type replayConfig struct {
	Services
	// Reason selects the dead letters with this reason only; all by default.
	Reason string
	// Limit moves at most this many; 0, the default: all.
	Limit int
}

func (c *replayConfig) validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all) or more", c.Limit)
	}
	return c.Services.validate()
}

// replay moves the dead letters present when it starts back to the work
// queue, those with the given reason only when --reason is set, at most
// --limit of them (deadletter.Replay). The customer of each replayed message
// goes back to pending with its attempts cleared. Dead letters it leaves go
// back to the end of the dead-letter queue unchanged. It reports how many it
// moved.
func replay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg replayConfig
	f := newFlags("consumer replay", replaySummary, getenv, stderr)
	f.bindServices(&cfg.Services)
	f.String(&cfg.Reason, "reason", "REPLAY_REASON", "", "move only dead letters with this reason (crm_attempts_exhausted, crm_rejected, invalid_message, database_rejected, delivery_limit)")
	f.DefaultText("reason", "all")
	f.Int(&cfg.Limit, "limit", "REPLAY_LIMIT", 0, "move at most this many dead letters")
	f.DefaultText("limit", "all")
	logger, err := f.logger(args, cfg.validate, stderr)
	if err != nil {
		return err
	}
	openCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	store, err := pgstore.Open(openCtx, cfg.store())
	cancel()
	if err != nil {
		return err
	}
	defer store.Close()
	dialCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	conn, err := rabbit.Dial(dialCtx, cfg.AMQPURL, "consumer replay")
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := deadletter.Replay(ctx, conn, cfg.topology(), store, deadletter.ReplayOptions{Reason: cfg.Reason, Limit: cfg.Limit})
	if err != nil {
		return err
	}
	logger.Info("replay done", "replayed", res.Replayed, "kept", res.Kept, "by_reason", fmt.Sprint(res.ByReason))
	what := "dead letters"
	if cfg.Reason != "" {
		what = "dead letters with reason " + cfg.Reason
	}
	_, err = fmt.Fprintf(stdout, "replayed %d %s to %s; %d left in %s\n", res.Replayed, what, res.Queue, res.Left, res.DeadQueue)
	return err
}
