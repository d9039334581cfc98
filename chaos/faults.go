package main

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// faultKind is one way the world breaks.
type faultKind string

const (
	faultKillConsumer faultKind = "SIGKILL consumer"
	faultCutRabbit    faultKind = "cut RabbitMQ connections"
	faultCutPostgres  faultKind = "cut Postgres connections"
	faultDownPostgres faultKind = "Postgres down 2s"
	faultCRMOutage    faultKind = "CRM outage 3s"
	faultCRM429       faultKind = "CRM 429 burst 3s"
	// faultStopNode, in the cluster mode only, stops the node leading the
	// import queue and starts it again; not drawn at random: clusterStops
	// of them run beside the other faults (stopNodes).
	faultStopNode faultKind = "RabbitMQ node stopped and started"
)

// clusterStops is how many node stops a cluster-mode run schedules.
const clusterStops = 2

// faultWeights says how often each kind comes up after the first round,
// which holds each kind once.
var faultWeights = []struct {
	kind   faultKind
	weight int
}{
	{faultKillConsumer, 4},
	{faultCutRabbit, 2},
	{faultCutPostgres, 1},
	{faultDownPostgres, 1},
	{faultCRMOutage, 1},
	{faultCRM429, 1},
}

// injector injects faults at points of the import: the i-th of n once
// i/(n+1) of the customers are done, and at least a seeded random gap
// (gapMin to gapMax) after the one before. Paced by the import's progress,
// not by the clock alone, every fault strikes while the import runs on a
// fast machine as on a busy one; the gap keeps two faults from landing in
// the same instant.
type injector struct {
	h      *harness
	fleet  *fleet
	rng    *rand.Rand
	n      int
	gapMin time.Duration
	gapMax time.Duration
	// done returns the fraction of the expected customers that are done
	// (synced, rejected or failed).
	done func(context.Context) (float64, error)

	mu    sync.Mutex
	count map[faultKind]int
}

// schedule is the seeded order of the faults: every kind once (shuffled),
// then weighted draws.
func (in *injector) schedule() []faultKind {
	var out []faultKind
	for _, w := range faultWeights {
		out = append(out, w.kind)
	}
	in.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	total := 0
	for _, w := range faultWeights {
		total += w.weight
	}
	for len(out) < in.n {
		x := in.rng.IntN(total)
		for _, w := range faultWeights {
			if x < w.weight {
				out = append(out, w.kind)
				break
			}
			x -= w.weight
		}
	}
	return out[:in.n]
}

// run injects the scheduled faults until they are all done or ctx ends.
func (in *injector) run(ctx context.Context) {
	in.count = map[faultKind]int{}
	var nodes sync.WaitGroup
	defer nodes.Wait()
	if in.h.cluster != nil {
		// Beside the other faults: a node takes a while to stop and start
		// again, and the import goes on meanwhile.
		nodes.Go(func() { in.stopNodes(ctx) })
	}
	schedule := in.schedule()
	for i, kind := range schedule {
		gap := in.gapMin + time.Duration(in.rng.Int64N(int64(in.gapMax-in.gapMin)+1))
		select {
		case <-time.After(gap):
		case <-ctx.Done():
			return
		}
		if !in.waitDone(ctx, float64(i+1)/float64(len(schedule)+1)) {
			return
		}
		in.inject(ctx, kind)
	}
	in.h.logger.Info("every scheduled fault injected")
}

// waitDone waits until at least the fraction at of the customers is done;
// false when ctx ended first.
func (in *injector) waitDone(ctx context.Context, at float64) bool {
	for {
		done, err := in.done(ctx)
		if err != nil {
			in.h.logger.Warn("progress for the next fault", "err", err)
		}
		if err == nil && done >= at {
			return true
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
	}
}

func (in *injector) inject(ctx context.Context, kind faultKind) {
	h := in.h
	log := h.logger.With("fault", string(kind))
	// The restoring half of a fault must run even when the run is ending.
	restore := context.WithoutCancel(ctx)
	switch kind {
	case faultStopNode:
		return // never scheduled: stopNodes runs them
	case faultKillConsumer:
		i := in.rng.IntN(len(in.fleet.current))
		if !in.fleet.kill(i) {
			return
		}
		log.Info("fault", "consumer", i+1)
	case faultCutRabbit:
		for _, p := range h.rabbitProxies {
			p.Cut()
		}
		log.Info("fault")
	case faultCutPostgres:
		h.pgProxy.Cut()
		log.Info("fault")
	case faultDownPostgres:
		h.pgProxy.Down()
		log.Info("fault")
		sleep(ctx, 2*time.Second)
		h.pgProxy.Up()
		log.Info("fault over")
	case faultCRMOutage:
		if err := h.crmPost(ctx, "/admin/outage?for=3s", nil); err != nil {
			log.Warn("fault not injected", "err", err)
			return
		}
		log.Info("fault")
	case faultCRM429:
		if err := h.crmPost(ctx, "/admin/config", map[string]any{"rate_limit": 50}); err != nil {
			log.Warn("fault not injected", "err", err)
			return
		}
		log.Info("fault", "rate_limit", 50)
		sleep(ctx, 3*time.Second)
		if err := h.crmPost(restore, "/admin/config", map[string]any{"rate_limit": 0}); err != nil {
			log.Error("could not lift the rate limit", "err", err)
		}
		log.Info("fault over")
	}
	in.struck(kind)
}

func (in *injector) struck(kind faultKind) {
	in.mu.Lock()
	in.count[kind]++
	in.mu.Unlock()
}

// stopNodes stops and starts clusterStops nodes in turn, the first as the
// import starts and each next one as soon as the one before is back, so
// that both strike while the import runs (a stop and start takes tens of
// seconds): each time the node leading the import queue, or another when
// that is the node stopped just before.
func (in *injector) stopNodes(ctx context.Context) {
	last := ""
	for i := range clusterStops {
		if i > 0 {
			sleep(ctx, in.gapMin)
		}
		if ctx.Err() != nil {
			return
		}
		node, stopped, err := in.h.cluster.bounce(ctx, in.h.top.Queue(), last)
		if stopped {
			in.struck(faultStopNode)
		}
		if err != nil {
			in.h.logger.Error("fault not injected in full", "fault", string(faultStopNode), "node", node, "err", err)
			return
		}
		last = node
	}
}

// counts returns the faults injected so far, by kind, in a stable order.
func (in *injector) counts() []kindCount {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []kindCount
	for k, n := range in.count {
		out = append(out, kindCount{string(k), n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

type kindCount struct {
	name string
	n    int
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
