package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// worker is one consumer process's loop: connect, declare, take batches of
// deliveries, and turn each into a durable outcome before acking it.
//
// The invariants it keeps (docs/ARCHITECTURE.md):
//   - A delivery is acked only after its outcome is durable: the customer is
//     in Postgres and synced, or rejected/failed with the dead letter
//     confirmed by the broker, or the retry copy is confirmed.
//   - The CRM is called only for a pending customer, only under this
//     worker's lease, always with the customer's idempotency key.
type worker struct {
	cfg     Config
	logger  *slog.Logger
	store   *pgstore.Store
	crm     *crm.Client
	top     rabbit.Topology
	gate    *gate
	breaker *gobreaker.CircuitBreaker[crm.Result]
	// crashAt, set only by fault-injection tests, may stop a batch dead at
	// a named point by returning an error.
	crashAt func(point string) error
	// crmSlots bounds the CRM calls in flight across all batches.
	crmSlots chan struct{}
	// metrics feeds /metrics and /readyz; nil-safe.
	metrics *metrics
}

func newWorker(cfg Config, logger *slog.Logger, store *pgstore.Store, client *crm.Client) *worker {
	w := &worker{cfg: cfg, logger: logger, store: store, crm: client, top: cfg.topology(), gate: &gate{}, metrics: newMetrics(), crmSlots: make(chan struct{}, cfg.CRMConcurrency)}
	w.breaker = newBreaker(cfg, logger)
	w.metrics.watchCircuit(func() bool { return w.breaker.State() == gobreaker.StateOpen })
	return w
}

// errFatal marks errors that reconnecting cannot cure.
var errFatal = errors.New("fatal")

// run keeps a session going until ctx is done. The first connection must
// succeed within the connect timeout; after that, lost connections are
// retried for ever with capped exponential backoff.
func (w *worker) run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = w.cfg.ReconnectMax
	firstDeadline := time.Now().Add(w.cfg.ConnectTimeout)
	connectedOnce := false
	for {
		connected, err := w.session(ctx)
		connectedOnce = connectedOnce || connected
		if ctx.Err() != nil {
			w.logger.Info("stopped")
			return nil //nolint:nilerr // asked to stop: the session's error is the stop itself
		}
		if errors.Is(err, errFatal) {
			return err
		}
		if !connectedOnce && time.Now().After(firstDeadline) {
			return fmt.Errorf("%w (gave up after --connect-timeout %s)", err, w.cfg.ConnectTimeout)
		}
		if connected {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		w.logger.Warn("RabbitMQ session ended; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// session is one connection's life. connected reports whether it got as far
// as consuming.
func (w *worker) session(ctx context.Context) (connected bool, err error) {
	conn, err := rabbit.Dial(ctx, w.cfg.AMQPURL, "consumer "+w.cfg.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	pub, err := rabbit.NewPublisher(conn)
	if err != nil {
		return false, err
	}
	defer pub.Close() //nolint:errcheck // closing the connection closes it too
	if err := w.top.Declare(pub.Channel()); err != nil {
		if amqpErr, ok := errors.AsType[*amqp.Error](err); ok && amqpErr.Code == amqp.PreconditionFailed {
			return false, fmt.Errorf("%w: %w", errFatal, err)
		}
		return false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open consuming channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(w.top.Queue(), w.cfg.Name, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", w.top.Queue(), err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	w.logger.Info("consuming", "queue", w.top.Queue(), "prefetch", w.cfg.Prefetch, "amqp", rabbit.Redact(w.cfg.AMQPURL))
	w.metrics.setConsuming(true)
	defer w.metrics.setConsuming(false)

	// In-flight work outlives the signal by at most the shutdown timeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.ShutdownTimeout, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stopAfter()

	// Batches run side by side, up to Prefetch/BatchSize of them, so that
	// one batch's CRM calls overlap the next one's database work. Each
	// runner is its own lease owner: a runner may re-take a lease it holds
	// (one whose answer was lost), never one another runner holds.
	runners := max(w.cfg.Prefetch/w.cfg.BatchSize, 1)
	type taken struct {
		deliveries []amqp.Delivery
		ack        *ackBatch
	}
	var acks acker
	batches := make(chan taken)
	failed := make(chan error, runners)
	hctx, stopRunners := context.WithCancel(work)
	var wg sync.WaitGroup
	for i := range runners {
		owner := fmt.Sprintf("%s#%d", w.cfg.Name, i)
		wg.Go(func() {
			for b := range batches {
				err := w.handle(hctx, pub, b.deliveries, owner)
				if err == nil {
					err = acks.done(b.ack)
				}
				if err != nil {
					failed <- err
					stopRunners()
					return
				}
			}
		})
	}
	defer func() {
		if ctx.Err() == nil {
			// Not a shutdown: the connection or a runner failed. Batches in
			// hand may still finish their CRM calls and write what they
			// learnt (only their acks died with the channel), but they do
			// not wait out a CRM or Postgres outage before the reconnect.
			grace := time.AfterFunc(w.cfg.CRMTimeout+5*time.Second, stopRunners)
			defer grace.Stop()
		}
		close(batches)
		wg.Wait()
		stopRunners()
	}()

	for {
		batch, err := collect(ctx, hctx.Done(), deliveries, w.cfg.BatchSize, w.cfg.BatchWait)
		if len(batch) > 0 {
			select {
			case batches <- taken{deliveries: batch, ack: acks.add(batch)}:
			case herr := <-failed:
				// Unacked deliveries go back to the queue when the channel
				// closes; the invariants make their redelivery safe.
				return true, herr
			case <-ctx.Done():
				// Shutting down with every runner busy: this batch is
				// handed back unprocessed.
			}
		}
		select {
		case herr := <-failed:
			return true, herr
		default:
		}
		if err != nil {
			// The connection's error, when it is what closed, is already
			// here; the channel alone may have closed (a consumer timeout,
			// the queue deleted), and then there is none to wait for.
			select {
			case cerr, ok := <-closed:
				if ok && cerr != nil {
					return true, fmt.Errorf("connection closed: %w", cerr)
				}
			case cerr, ok := <-chClosed:
				if ok && cerr != nil {
					return true, fmt.Errorf("consuming channel closed: %w", cerr)
				}
			default:
			}
			return true, err
		}
		if ctx.Err() != nil {
			// Stop taking deliveries; finish what the runners hold (the
			// deferred wait), and hand back what is unacked.
			_ = ch.Cancel(w.cfg.Name, false)
			return true, nil
		}
	}
}

var errDeliveriesClosed = errors.New("delivery channel closed")

// collect takes up to limit deliveries: it waits for the first as long as
// needed, then up to wait for the rest. It gives up early when ctx is done or
// stop closes (a batch runner failed).
func collect(ctx context.Context, stop <-chan struct{}, deliveries <-chan amqp.Delivery, limit int, wait time.Duration) ([]amqp.Delivery, error) {
	var batch []amqp.Delivery
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, errDeliveriesClosed
		}
		batch = append(batch, d)
	case <-ctx.Done():
		return nil, nil
	case <-stop:
		return nil, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(batch) < limit {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return batch, errDeliveriesClosed
			}
			batch = append(batch, d)
		case <-timer.C:
			return batch, nil
		case <-ctx.Done():
			return batch, nil
		case <-stop:
			return batch, nil
		}
	}
	return batch, nil
}

// withDB runs op until it succeeds, retrying with backoff while Postgres is
// unreachable: deliveries are held, not requeued, so no delivery count and no
// CRM attempt is burned by a database outage. An error Postgres gives for
// the data itself is returned at once.
func withDB[T any](ctx context.Context, w *worker, what string, op func(context.Context) (T, error)) (T, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = w.cfg.ReconnectMax
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op(ctx)
		if err != nil && (pgstore.IsDataError(err) || ctx.Err() != nil) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		w.logger.Warn("PostgreSQL unavailable; holding the batch and retrying", "op", what, "error", err, "retry_in", d.Round(time.Millisecond).String())
	}))
}

// item is one delivery of a batch and what became of it.
type item struct {
	d   amqp.Delivery
	c   customer.Customer
	out outcome
	// called is set when the CRM call was sent: one cut off before its
	// answer may still be running at the CRM.
	called bool
}

func (w *worker) handle(ctx context.Context, pub *rabbit.Publisher, batch []amqp.Delivery, owner string) error {
	w.metrics.batchStarted(len(batch))
	defer w.metrics.batchEnded(len(batch))
	items := make([]*item, len(batch))
	byEmail := map[string][]*item{}
	var valid []customer.Customer
	for i, d := range batch {
		it := &item{d: d}
		items[i] = it
		c, err := customer.Decode(d.Body)
		if err != nil {
			it.out = deadLetter(reasonInvalidMessage, err)
			continue
		}
		it.c = c
		if byEmail[c.Email] == nil {
			valid = append(valid, c)
		}
		byEmail[c.Email] = append(byEmail[c.Email], it)
	}

	if err := w.insert(ctx, valid, byEmail); err != nil {
		return err
	}
	if err := w.crashPoint("after-insert"); err != nil {
		return err
	}
	emails := make([]string, 0, len(byEmail))
	for e, its := range byEmail {
		if its[0].out.kind == outcomeNone {
			emails = append(emails, e)
		}
	}
	settle, err := w.drive(ctx, owner, emails, byEmail)
	if err != nil {
		return err
	}
	if err := w.crashPoint("after-crm"); err != nil {
		return err
	}

	// Dead letters and retry copies are confirmed before anything is
	// settled or acked.
	var msgs []rabbit.Message
	for _, it := range items {
		if m, ok := w.message(it); ok {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) > 0 {
		if err := pub.PublishAll(ctx, msgs); err != nil {
			w.releaseOnError(owner, settle)
			return fmt.Errorf("publish %d retry and dead-letter messages: %w", len(msgs), err)
		}
	}
	if len(settle) > 0 {
		if _, err := withDB(ctx, w, "settle", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, w.store.Settle(ctx, owner, settle)
		}); err != nil {
			// Stopped while writing them: the retry copies and dead letters
			// are out, so the outcomes are final; one last try, or the
			// leases expire and a redelivery drives the customers again.
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if lerr := w.store.Settle(last, owner, settle); lerr != nil {
				w.logger.Warn("could not write CRM outcomes; their leases expire on their own", "error", lerr, "lease", w.cfg.Lease.String())
			}
			return fmt.Errorf("settle customers: %w", err)
		}
	}
	if err := w.crashPoint("after-settle"); err != nil {
		return err
	}
	w.log(items)
	w.metrics.outcomes(items)
	// Every delivery of the batch has its outcome: the caller acks it.
	return nil
}

// acker acks finished batches with one multiple ack each, in delivery order:
// batches run side by side and finish in any order, and a multiple ack on a
// batch's last delivery would also ack an earlier batch still in work. So a
// batch is acked only once every batch taken before it is done, which costs
// the broker one ack per batch rather than one per message.
type acker struct {
	mu      sync.Mutex
	pending []*ackBatch // in the order the batches were taken
}

type ackBatch struct {
	last amqp.Delivery
	done bool
}

// add registers a batch as it is taken off the channel.
func (a *acker) add(batch []amqp.Delivery) *ackBatch {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &ackBatch{last: batch[len(batch)-1]}
	a.pending = append(a.pending, b)
	return b
}

// done marks b finished and acks every finished batch at the head of the line.
func (a *acker) done(b *ackBatch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	b.done = true
	var last *ackBatch
	for len(a.pending) > 0 && a.pending[0].done {
		last = a.pending[0]
		a.pending = a.pending[1:]
	}
	if last == nil {
		return nil
	}
	if err := last.last.Ack(true); err != nil {
		return fmt.Errorf("ack deliveries up to %d: %w", last.last.DeliveryTag, err)
	}
	return nil
}

// crashPoint lets fault-injection tests stop a batch dead at a named point,
// as a killed process would: nothing released, nothing acked.
func (w *worker) crashPoint(point string) error {
	if w.crashAt == nil {
		return nil
	}
	return w.crashAt(point)
}

// drive leases the customers among emails and calls the CRM for each until
// every one has an outcome. While the circuit is open it waits, holding the
// batch: no lease is taken and no attempt counted; calls the circuit or a
// Retry-After kept from being made give their lease and attempt back and are
// tried again.
func (w *worker) drive(ctx context.Context, owner string, emails []string, byEmail map[string][]*item) ([]pgstore.Outcome, error) {
	var settle []pgstore.Outcome
	for len(emails) > 0 {
		if err := w.waitCircuit(ctx); err != nil {
			w.releaseOnError(owner, settle)
			return nil, err
		}
		leasedAt := time.Now() // no later than the leases start
		claims, err := withDB(ctx, w, "lease", func(ctx context.Context) (map[string]pgstore.Claim, error) {
			return w.store.Lease(ctx, emails, owner, w.cfg.Lease)
		})
		if err != nil {
			w.releaseOnError(owner, settle)
			return nil, fmt.Errorf("lease customers: %w", err)
		}
		var calls []*item
		for _, e := range emails {
			first := byEmail[e][0]
			cl, found := claims[e]
			switch {
			case found && cl.Leased:
				calls = append(calls, first)
			case found && cl.State != pgstore.StatePending:
				first.out = ack("duplicate: customer already " + string(cl.State))
			default:
				// Another worker holds the lease (or took it this instant). It
				// may die before finishing, so this copy waits in the first
				// retry queue and looks again, rather than being dropped.
				first.out = waitLease()
			}
		}
		deferred := w.callCRM(ctx, calls, claims, leasedAt)
		var interrupted bool
		for _, it := range calls {
			if it.out.kind == outcomeNone {
				interrupted = interrupted || ctx.Err() != nil
				continue
			}
			settle = append(settle, it.out.settle(it.c.Email))
		}
		if interrupted {
			// Shutdown cut the calls short: hand the whole batch back
			// (nothing is acked) and release the leases of customers whose
			// call was not sent, so that their redelivery need not wait. A
			// call cut off in flight may still run at the CRM: its lease
			// stays until it expires, so nobody calls alongside it.
			var uncalled []string
			for _, it := range calls {
				if it.out.kind == outcomeNone && !it.called {
					uncalled = append(uncalled, it.c.Email)
				}
			}
			w.releaseOnError(owner, settle, uncalled...)
			return nil, fmt.Errorf("CRM calls interrupted: %w", context.Cause(ctx))
		}
		emails = emails[:0]
		for _, it := range deferred {
			emails = append(emails, it.c.Email)
		}
		if len(emails) > 0 {
			if _, err := withDB(ctx, w, "release", func(ctx context.Context) (struct{}, error) {
				return struct{}{}, w.store.Release(ctx, owner, emails)
			}); err != nil {
				w.releaseOnError(owner, settle, emails...)
				return nil, fmt.Errorf("release customers: %w", err)
			}
			// Deferred by a probing circuit or a near-expired lease: a
			// short pause, so that the next round is not a busy loop of
			// leases and releases.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return settle, nil
}

// insert stores the batch's customers, once each. When Postgres refuses the
// data of one row, the rows are inserted one by one so that only the bad one
// is dead-lettered.
func (w *worker) insert(ctx context.Context, valid []customer.Customer, byEmail map[string][]*item) error {
	if len(valid) == 0 {
		return nil
	}
	ins, err := withDB(ctx, w, "insert", func(ctx context.Context) (pgstore.Inserted, error) {
		return w.store.InsertNew(ctx, valid)
	})
	if err == nil {
		w.metrics.stored(ins, deliveriesOf(byEmail))
		return nil
	}
	if !pgstore.IsDataError(err) {
		return fmt.Errorf("insert customers: %w", err)
	}
	for _, c := range valid {
		ins, err := withDB(ctx, w, "insert", func(ctx context.Context) (pgstore.Inserted, error) {
			return w.store.InsertNew(ctx, []customer.Customer{c})
		})
		if pgstore.IsDataError(err) {
			for _, it := range byEmail[c.Email] {
				it.out = deadLetter(reasonDatabaseRejected, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("insert customer: %w", err)
		}
		w.metrics.stored(ins, len(byEmail[c.Email]))
	}
	return nil
}

// callCRM calls the CRM for every leased customer, at most CRMConcurrency at
// once, through the circuit breaker, and records each outcome. It returns the
// items it did not call: the circuit was open (or probing), the CRM asked to
// slow down, or the leases taken at leasedAt would not outlast the call.
func (w *worker) callCRM(ctx context.Context, calls []*item, claims map[string]pgstore.Claim, leasedAt time.Time) []*item {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		deferred []*item
	)
	// Call only while the lease outlasts the call with a margin: a tenth of
	// the slack between them, at most a second (--lease > --crm-timeout).
	margin := min(time.Second, (w.cfg.Lease-w.cfg.CRMTimeout)/10)
	callBy := w.cfg.Lease - w.cfg.CRMTimeout - margin
	deferItem := func(it *item) {
		mu.Lock()
		deferred = append(deferred, it)
		mu.Unlock()
	}
	for _, it := range calls {
		w.crmSlots <- struct{}{}
		wg.Go(func() {
			defer func() { <-w.crmSlots }()
			// Waiting for a slot or out a Retry-After may have eaten the
			// lease: call only while it outlasts the call, so that nobody
			// else can have taken it meanwhile.
			if err := w.gate.wait(ctx); err != nil {
				return
			}
			if time.Since(leasedAt) > callBy {
				deferItem(it)
				return
			}
			cl := claims[it.c.Email]
			it.called = true
			res, err := w.breaker.Execute(func() (crm.Result, error) { return w.createCustomer(ctx, cl.Customer) })
			switch {
			case ctx.Err() != nil:
				// cut off: no outcome; drive keeps or releases the lease
			case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests), isRateLimited(err):
				deferItem(it)
			default:
				it.out = classify(res, err, cl.Attempts, w.cfg.MaxAttempts)
			}
		})
	}
	wg.Wait()
	return deferred
}

// waitCircuit holds the batch while the CRM circuit is open. The breaker
// moves to half-open on its own once the open period is over, and then lets
// one call through as a probe.
func (w *worker) waitCircuit(ctx context.Context) error {
	for w.breaker.State() == gobreaker.StateOpen {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the CRM circuit to close: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// createCustomer makes one CRM call; a Retry-After in the answer closes the
// gate every call of the process waits on (callCRM), not only this one.
//
// It sends the customer as stored (its first insert), not the delivery's
// copy, so that Postgres and the CRM hold the same data whichever row of an
// export drives the creation.
func (w *worker) createCustomer(ctx context.Context, c customer.Customer) (crm.Result, error) {
	started := time.Now()
	res, err := w.crm.CreateCustomer(ctx, customer.IdempotencyKey(c.Email), crm.Customer{
		Email: c.Email, Name: c.Name, FirstName: c.FirstName, LastName: c.LastName, Phone: c.Phone, Attributes: c.Attributes,
	})
	w.metrics.crmCall(res, err, time.Since(started))
	if d, ok := crm.RetryAfter(err); ok {
		w.gate.close(d)
	}
	return res, err
}

// message builds the retry copy or dead letter an item's outcome needs.
func (w *worker) message(it *item) (rabbit.Message, bool) {
	o := it.out
	if o.kind != outcomeRetry && o.kind != outcomeDead {
		return rabbit.Message{}, false
	}
	headers := amqp.Table{}
	for k, v := range it.d.Headers {
		headers[k] = v
	}
	pubMsg := amqp.Publishing{
		Headers:      headers,
		ContentType:  it.d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    it.d.MessageId,
		Timestamp:    it.d.Timestamp,
		Type:         it.d.Type,
		AppId:        it.d.AppId,
		Body:         it.d.Body,
	}
	if o.err != nil {
		headers["x-last-error"] = truncate(o.err.Error(), 1024)
	}
	if o.kind == outcomeDead {
		headers["x-death-reason"] = o.reason
		headers["x-attempts"] = int64(o.attempts)
		headers["x-dead-lettered-at"] = time.Now().UTC().Format(time.RFC3339)
		headers["x-consumer"] = w.cfg.Name
		return rabbit.Message{Exchange: w.top.DeadExchange(), Key: rabbit.DeadKey, Publishing: pubMsg}, true
	}
	step := min(max(o.attempts-1, 0), len(w.top.RetryDelays)-1)
	headers["x-retry-attempt"] = int64(o.attempts)
	// Jitter below the queue's TTL spreads a burst of retries out; the
	// queue's own TTL stays the upper bound.
	d := w.top.RetryDelays[step]
	jittered := d - time.Duration(rand.Int64N(int64(d)/5+1)) //nolint:gosec // jitter needs no secure source
	pubMsg.Expiration = strconv.FormatInt(max(jittered.Milliseconds(), 1), 10)
	return rabbit.Message{Exchange: "", Key: w.top.RetryQueue(step), Publishing: pubMsg}, true
}

// releaseOnError gives back the leases of a batch that could not finish, so
// its redelivery does not wait for them to expire. Customers whose CRM call
// was made keep the attempt; those never called get it back.
func (w *worker) releaseOnError(owner string, called []pgstore.Outcome, uncalled ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(called) > 0 {
		// A synced answer is final and needs no message; a rejection or
		// exhaustion is final only with its dead letter, which was not
		// sent: back to pending.
		release := make([]pgstore.Outcome, len(called))
		for i, o := range called {
			release[i] = o
			if o.State != pgstore.StateSynced {
				release[i] = pgstore.Outcome{Email: o.Email, State: pgstore.StatePending, Error: "batch not completed"}
			}
		}
		if err := w.store.Settle(ctx, owner, release); err != nil {
			w.logger.Warn("could not release leases; they expire on their own", "error", err, "lease", w.cfg.Lease.String())
		}
	}
	if len(uncalled) > 0 {
		if err := w.store.Release(ctx, owner, uncalled); err != nil {
			w.logger.Warn("could not release leases; they expire on their own", "error", err, "lease", w.cfg.Lease.String())
		}
	}
}

// truncate makes s fit for a text column or header: invalid UTF-8 and NUL
// bytes replaced, cut to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// log reports the batch: one debug line, and a line per dead letter.
func (w *worker) log(items []*item) {
	counts := map[string]int{}
	for _, it := range items {
		switch it.out.kind {
		case outcomeDead:
			counts["dead_lettered"]++
			w.logger.Warn("dead-lettered", "reason", it.out.reason, "error", errText(it.out.err),
				"email", it.c.Email, "message_id", it.d.MessageId, "attempts", it.out.attempts)
		case outcomeRetry:
			counts["retried"]++
		case outcomeAck, outcomeNone:
			counts["acked"]++
		}
	}
	w.logger.Debug("batch done", "deliveries", len(items), "acked", counts["acked"], "retried", counts["retried"], "dead_lettered", counts["dead_lettered"])
}
