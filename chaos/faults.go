package main

import (
	"context"
	"math/rand/v2"
	"slices"
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
	// import queue and starts it again; it is not drawn at random but
	// scheduled clusterStops times.
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

// injector injects faults at seeded random moments.
type injector struct {
	h      *harness
	fleet  *fleet
	rng    *rand.Rand
	n      int
	gapMin time.Duration
	gapMax time.Duration

	mu    sync.Mutex
	count map[faultKind]int
	// lastStopped is the cluster node stopped last.
	lastStopped string
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
	out = out[:in.n]
	if in.h.cluster != nil {
		// The first early, while the import runs; the second later, once
		// the first node is back: each time another node.
		out = slices.Insert(out, min(1, len(out)), faultStopNode)
		out = slices.Insert(out, len(out)*2/3, faultStopNode)
	}
	return out
}

// run injects the scheduled faults until they are all done or ctx ends.
func (in *injector) run(ctx context.Context) {
	in.count = map[faultKind]int{}
	for _, kind := range in.schedule() {
		gap := in.gapMin + time.Duration(in.rng.Int64N(int64(in.gapMax-in.gapMin)+1))
		select {
		case <-time.After(gap):
		case <-ctx.Done():
			return
		}
		in.inject(ctx, kind)
	}
	in.h.logger.Info("every scheduled fault injected")
}

func (in *injector) inject(ctx context.Context, kind faultKind) {
	h := in.h
	log := h.logger.With("fault", string(kind))
	// The restoring half of a fault must run even when the run is ending.
	restore := context.WithoutCancel(ctx)
	switch kind {
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
	case faultStopNode:
		node, err := h.cluster.bounce(ctx, h.top.Queue(), in.lastStopped)
		if err != nil {
			log.Error("fault not injected in full", "node", node, "err", err)
			return
		}
		in.lastStopped = node
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
	in.mu.Lock()
	in.count[kind]++
	in.mu.Unlock()
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
