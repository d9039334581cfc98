package main

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// progress counts what a worker did, for the --log-every line. The
// Prometheus counters say the same to a scraper; these are read back.
type progress struct {
	received, stored, synced, retried, deadLettered atomic.Int64
}

// progressSnapshot is the counts at one moment.
type progressSnapshot struct {
	received, stored, synced, retried, deadLettered int64
}

func (p *progress) snapshot() progressSnapshot {
	return progressSnapshot{
		received: p.received.Load(), stored: p.stored.Load(), synced: p.synced.Load(),
		retried: p.retried.Load(), deadLettered: p.deadLettered.Load(),
	}
}

func (s progressSnapshot) minus(o progressSnapshot) progressSnapshot {
	return progressSnapshot{
		received: s.received - o.received, stored: s.stored - o.stored, synced: s.synced - o.synced,
		retried: s.retried - o.retried, deadLettered: s.deadLettered - o.deadLettered,
	}
}

// logProgress writes one line every interval with what happened since the
// last, only when something did, until ctx ends.
func logProgress(ctx context.Context, p *progress, every time.Duration, logger *slog.Logger) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := p.snapshot(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := p.snapshot()
			d := cur.minus(last)
			if d != (progressSnapshot{}) {
				secs := now.Sub(lastAt).Seconds()
				logger.Info("progress", "received", d.received, "stored", d.stored, "synced", d.synced,
					"retried", d.retried, "dead_lettered", d.deadLettered,
					"received_per_s", math.Round(float64(d.received)/secs*10)/10, "interval", now.Sub(lastAt).Round(time.Millisecond).String())
			}
			last, lastAt = cur, now
		}
	}
}
