package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/crm"
)

// What a CRM call came to: the values of crm_calls_total's outcome label.
const (
	crmSynced    = "synced"    // created now
	crmExisted   = "existed"   // 409: it was there already
	crmReplayed  = "replayed"  // answered from the CRM's idempotency store
	crmRejected  = "rejected"  // permanent refusal (4xx but 408 and 429)
	crmTransient = "transient" // 5xx, 408, 429, timeout, connection error
)

// metrics is what a consumer tells Prometheus and its readiness probe. It
// has its own registry, not the global one, so that tests can run several
// consumers in one process and a library cannot slip metrics in.
//
// Every method is safe on a nil *metrics, so a worker built without one
// (in a test) needs no guard at each call site.
type metrics struct {
	reg *prometheus.Registry

	received   prometheus.Counter
	inserted   prometheus.Counter
	duplicates prometheus.Counter
	crmCalls   *prometheus.CounterVec
	// crmCallsBy holds crmCalls' counter of each outcome, looked up once
	// rather than for every customer called.
	crmCallsBy   map[string]prometheus.Counter
	crmLatency   prometheus.Histogram
	retries      prometheus.Counter
	deadLettered *prometheus.CounterVec
	batchSize    prometheus.Histogram
	inFlight     prometheus.Gauge
	consuming    prometheus.Gauge

	// The readiness probe reads these rather than the gauges: a gauge is
	// write-only for its owner.
	isConsuming   atomic.Bool
	isCircuitOpen atomic.Bool
	// circuitFunc, when set by watchCircuit, is asked instead of
	// isCircuitOpen.
	circuitFunc atomic.Pointer[func() bool]
	// progress is what the --log-every line reports.
	progress progress
}

func newMetrics() *metrics {
	const ns = "custimport_consumer"
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "deliveries_received_total",
			Help: "Deliveries taken off the import queue (redeliveries and retries included).",
		}),
		inserted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "customers_inserted_total",
			Help: "Customers stored in PostgreSQL for the first time.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "duplicates_total",
			Help: "Valid deliveries whose customer was already stored: a repeated row, a redelivery or a retry.",
		}),
		crmCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "crm_calls_total",
			Help: "CRM create calls by outcome: synced, existed (409), replayed (idempotent replay), rejected (permanent), transient.",
		}, []string{"outcome"}),
		crmLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "crm_call_duration_seconds",
			Help:    "Duration of CRM create calls, whatever their outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "retries_scheduled_total",
			Help: "Copies sent to a retry queue (CRM transient failures and customers leased by another consumer).",
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_lettered_total",
			Help: "Deliveries given up and sent to the dead-letter queue, by reason.",
		}, []string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "batch_size",
			Help:    "Deliveries per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 to 2048
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "deliveries_in_flight",
			Help: "Deliveries held and not yet acked.",
		}),
		consuming: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "rabbitmq_consuming",
			Help: "1 while connected to RabbitMQ and consuming the import queue, 0 otherwise.",
		}),
	}
	circuit := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "crm_circuit_open",
		Help: "1 while the CRM circuit is open (CRM calls wait for a probe), 0 otherwise.",
	}, func() float64 { return b2f(m.circuitOpen()) })
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.received, m.inserted, m.duplicates, m.crmCalls, m.crmLatency, m.retries,
		m.deadLettered, m.batchSize, m.inFlight, circuit, m.consuming, buildinfo.Collector(version),
	)
	// Series that exist from the start: a rate() over a counter that
	// appears only on its first increment misses that increment.
	m.crmCallsBy = map[string]prometheus.Counter{}
	for _, o := range []string{crmSynced, crmExisted, crmReplayed, crmRejected, crmTransient} {
		m.crmCallsBy[o] = m.crmCalls.WithLabelValues(o)
	}
	for _, r := range []string{reasonInvalidMessage, reasonDatabaseRejected, reasonCRMRejected, reasonCRMExhausted} {
		m.deadLettered.WithLabelValues(r)
	}
	return m
}

// batchStarted counts a batch's deliveries as received and in flight.
func (m *metrics) batchStarted(n int) {
	if m == nil {
		return
	}
	m.received.Add(float64(n))
	m.progress.received.Add(int64(n))
	m.batchSize.Observe(float64(n))
	m.inFlight.Add(float64(n))
}

// batchEnded takes a batch's deliveries out of flight, acked or handed back.
func (m *metrics) batchEnded(n int) {
	if m == nil {
		return
	}
	m.inFlight.Sub(float64(n))
}

// stored counts an insert: inserted customers stored for the first time,
// duplicates valid deliveries whose customer was already there.
func (m *metrics) stored(inserted, duplicates int) {
	if m == nil {
		return
	}
	m.inserted.Add(float64(inserted))
	m.progress.stored.Add(int64(inserted))
	m.duplicates.Add(float64(max(duplicates, 0)))
}

// crmCall records one CRM call. A call cut short by shutdown is not an
// answer from the CRM and is not counted.
func (m *metrics) crmCall(res crm.Result, err error, took time.Duration) {
	if m == nil || errors.Is(err, context.Canceled) {
		return
	}
	m.crmLatency.Observe(took.Seconds())
	label := crmCallLabel(res, err)
	m.crmCallsBy[label].Inc()
	if label != crmRejected && label != crmTransient {
		m.progress.synced.Add(1)
	}
}

// crmCallLabel is the value of crm_calls_total's outcome label for a call.
func crmCallLabel(res crm.Result, err error) string {
	switch {
	case err == nil && res.Replayed:
		return crmReplayed
	case err == nil && res.Existed:
		return crmExisted
	case err == nil:
		return crmSynced
	case isAuthError(err):
		return crmTransient // our credentials, not the customer: see classify
	case crm.IsPermanent(err):
		return crmRejected
	default:
		return crmTransient
	}
}

// batchDone counts what a finished batch sent to the retry and dead-letter
// queues.
func (m *metrics) batchDone(t tally) {
	if m == nil {
		return
	}
	m.retries.Add(float64(t.retried))
	m.progress.retried.Add(int64(t.retried))
	for reason, n := range t.dead {
		m.deadLettered.WithLabelValues(reason).Add(float64(n))
		m.progress.deadLettered.Add(int64(n))
	}
}

// setConsuming tells readiness whether this consumer is consuming.
func (m *metrics) setConsuming(on bool) {
	if m == nil {
		return
	}
	m.isConsuming.Store(on)
	m.consuming.Set(b2f(on))
}

// setCircuit tells readiness and Prometheus whether the CRM circuit is
// open, for a breaker that reports its changes.
func (m *metrics) setCircuit(open bool) {
	if m == nil {
		return
	}
	m.isCircuitOpen.Store(open)
}

// watchCircuit makes readiness and Prometheus ask open whenever they look,
// for a breaker that is asked rather than heard from. It wins over
// setCircuit.
func (m *metrics) watchCircuit(open func() bool) {
	if m == nil {
		return
	}
	m.circuitFunc.Store(&open)
}

func (m *metrics) circuitOpen() bool {
	if f := m.circuitFunc.Load(); f != nil {
		return (*f)()
	}
	return m.isCircuitOpen.Load()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
