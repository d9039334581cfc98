package main

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sony/gobreaker/v2"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

// item is one delivery of a batch and what became of it.
type item struct {
	d   amqp.Delivery
	c   customer.Customer
	out outcome
	// called is set once the CRM call's request was written: a call cut
	// off after that may still run at the CRM, one cut off before it never
	// reached it.
	called atomic.Bool
}

// batch is the deliveries one runner takes through their steps together:
// decode, insert, lease, call the CRM, publish retry copies and dead
// letters, settle the CRM results in the store, ack. Each step is a method;
// handle runs them in order.
type batch struct {
	w     *worker
	owner string // the runner whose leases these are
	items []*item
	// byEmail indexes the decoded items by customer: one insert, one lease
	// and one call per customer, whatever the number of its deliveries.
	byEmail map[string][]*item
	// valid is one customer per email, in delivery order: what is inserted.
	valid []customer.Customer
	// results are the CRM results to settle, one per customer called.
	results []pgstore.CRMResult
	// preLeased are the customers whose first insert this batch made with
	// its lease and first attempt (pgstore.InsertLeased), until the first
	// round of drive uses or gives back those leases; leasedAt is no later
	// than they began.
	preLeased pgstore.Inserted
	leasedAt  time.Time
	// stopping closes when the consumer is asked to stop.
	stopping <-chan struct{}
}

// newBatch decodes ds; a delivery that is not a customer is dead-lettered
// at once.
func (w *worker) newBatch(owner string, ds []amqp.Delivery) *batch {
	b := &batch{w: w, owner: owner, items: make([]*item, len(ds)), byEmail: map[string][]*item{}}
	for i, d := range ds {
		it := &item{d: d}
		b.items[i] = it
		c, err := customer.Decode(d.Body)
		if err != nil {
			it.out = deadLetter(reasonInvalidMessage, err)
			continue
		}
		it.c = c
		if b.byEmail[c.Email] == nil {
			b.valid = append(b.valid, c)
		}
		b.byEmail[c.Email] = append(b.byEmail[c.Email], it)
	}
	return b
}

// handle takes a batch of deliveries to an outcome each. When it returns
// nil every delivery's outcome is durable and the caller acks them; an
// error leaves them unacked, to be redelivered. ctx bounds the work;
// stopping closes when the consumer is asked to stop, which ends a wait for
// the circuit at once (work in flight gets until ctx ends).
func (w *worker) handle(ctx context.Context, stopping <-chan struct{}, pub *rabbit.Publisher, ds []amqp.Delivery, owner string) error {
	w.metrics.batchStarted(len(ds))
	defer w.metrics.batchEnded(len(ds))
	b := w.newBatch(owner, ds)
	b.stopping = stopping
	if err := b.insert(ctx); err != nil {
		return err
	}
	if err := w.crashPoint("after-insert"); err != nil {
		return err
	}
	if err := b.drive(ctx); err != nil {
		return err
	}
	if err := w.crashPoint("after-crm"); err != nil {
		return err
	}
	if err := b.publish(ctx, pub); err != nil {
		return err
	}
	if err := b.settle(ctx); err != nil {
		return err
	}
	if err := w.crashPoint("after-settle"); err != nil {
		return err
	}
	t := b.tally()
	b.log(t)
	w.metrics.batchDone(t)
	return nil
}

// insert stores the batch's customers, once each. While the CRM circuit is
// closed, a customer's first insert takes its CRM lease too: one write
// rather than two, and the first round of drive needs no lease statement for
// it. When Postgres refuses the data of one row, the rows are inserted one by
// one so that only the bad one is dead-lettered.
func (b *batch) insert(ctx context.Context) error {
	if len(b.valid) == 0 {
		return nil
	}
	// With the circuit open or probing no call is about to be made: a lease
	// would only count an attempt to give back.
	owner := ""
	if b.w.breaker.State() == gobreaker.StateClosed {
		owner = b.owner
	}
	b.leasedAt = time.Now() // no later than the leases start
	insert := func(cs []customer.Customer) (pgstore.Inserted, error) {
		return withDB(ctx, b.w, "insert", func(ctx context.Context) (pgstore.Inserted, error) {
			return b.w.store.InsertLeased(ctx, cs, owner, b.w.cfg.Lease)
		})
	}
	ins, err := insert(b.valid)
	if err == nil {
		if owner != "" {
			b.preLeased = ins
		}
		deliveries := 0
		for _, its := range b.byEmail {
			deliveries += len(its)
		}
		b.w.metrics.stored(len(ins), deliveries-len(ins))
		return nil
	}
	if !pgstore.IsDataError(err) {
		return fmt.Errorf("insert customers: %w", err)
	}
	if owner != "" {
		b.preLeased = pgstore.Inserted{}
	}
	for _, c := range b.valid {
		ins, err := insert([]customer.Customer{c})
		if pgstore.IsDataError(err) {
			for _, it := range b.byEmail[c.Email] {
				it.out = deadLetter(reasonDatabaseRejected, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("insert customer: %w", err)
		}
		if owner != "" && ins[c.Email] {
			b.preLeased[c.Email] = true
		}
		b.w.metrics.stored(len(ins), len(b.byEmail[c.Email])-len(ins))
	}
	return nil
}

// undecided lists the customers that still need their CRM step.
func (b *batch) undecided() []string {
	emails := make([]string, 0, len(b.byEmail))
	for _, c := range b.valid {
		if b.byEmail[c.Email][0].out.kind == outcomeNone {
			emails = append(emails, c.Email)
		}
	}
	return emails
}

// lease takes the leases of emails; it returns the items this batch may
// call the CRM for, and decides the others (a duplicate of a customer
// already done; one leased by another worker). The leases the inserts took
// are used as they are, once: the customer is as this batch stored it, with
// its first attempt.
func (b *batch) lease(ctx context.Context, emails []string) ([]*item, map[string]pgstore.Claim, error) {
	claims := make(map[string]pgstore.Claim, len(emails))
	rest := emails
	if len(b.preLeased) > 0 {
		rest = nil
		for _, e := range emails {
			if !b.preLeased[e] {
				rest = append(rest, e)
				continue
			}
			claims[e] = pgstore.Claim{Email: e, State: pgstore.StatePending, Attempts: 1, Leased: true, Customer: b.byEmail[e][0].c}
		}
		b.preLeased = nil
	}
	if len(rest) > 0 {
		got, err := withDB(ctx, b.w, "lease", func(ctx context.Context) (map[string]pgstore.Claim, error) {
			return b.w.store.Lease(ctx, rest, b.owner, b.w.cfg.Lease)
		})
		if err != nil {
			return b.leasedItems(claims), nil, fmt.Errorf("lease customers: %w", err)
		}
		maps.Copy(claims, got)
	}
	var calls []*item
	for _, e := range emails {
		first := b.byEmail[e][0]
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
	return calls, claims, nil
}

// drive leases the undecided customers and calls the CRM for each until
// every one has an outcome. While the circuit is open it waits, holding the
// batch: no lease is taken and no attempt counted; calls the circuit or a
// Retry-After kept from being made give their lease and attempt back and are
// tried again.
func (b *batch) drive(ctx context.Context) error {
	emails := b.undecided()
	if err := b.releaseIfOpen(ctx); err != nil {
		return err
	}
	for len(emails) > 0 {
		if err := b.w.waitCircuit(ctx, b.stopping); err != nil {
			b.handBack(b.leasedItems(nil))
			return err
		}
		leasedAt := time.Now() // no later than the leases start
		if len(b.preLeased) > 0 {
			leasedAt = b.leasedAt
		}
		calls, claims, err := b.lease(ctx, emails)
		if err != nil {
			b.handBack(calls)
			return err
		}
		deferred := b.w.callCRM(ctx, calls, claims, leasedAt)
		var cut []*item
		for _, it := range calls {
			if it.out.kind == outcomeNone {
				// Without an outcome: deferred (given back below), or cut
				// off by a shutdown.
				if ctx.Err() != nil {
					cut = append(cut, it)
				}
				continue
			}
			b.results = append(b.results, it.out.crmResult(it.c.Email))
		}
		if len(cut) > 0 {
			// Shutdown cut the calls short: hand the whole batch back
			// (nothing is acked).
			b.handBack(cut)
			return fmt.Errorf("CRM calls interrupted: %w", context.Cause(ctx))
		}
		if emails, err = b.giveBack(ctx, deferred); err != nil {
			return err
		}
	}
	return nil
}

// releaseIfOpen gives back the leases the inserts took when the circuit
// opened since: the batch is about to wait, and their attempts must not
// count meanwhile.
func (b *batch) releaseIfOpen(ctx context.Context) error {
	if len(b.preLeased) == 0 || b.w.breaker.State() != gobreaker.StateOpen {
		return nil
	}
	pre := b.leasedItems(nil)
	b.preLeased = nil
	_, err := b.giveBack(ctx, pre)
	return err
}

// leasedItems lists the first item of every customer leased in claims, and
// of every customer still holding the lease its insert took.
func (b *batch) leasedItems(claims map[string]pgstore.Claim) []*item {
	var its []*item
	for _, c := range b.valid {
		if cl, ok := claims[c.Email]; (ok && cl.Leased) || b.preLeased[c.Email] {
			its = append(its, b.byEmail[c.Email][0])
		}
	}
	return its
}

// giveBack releases the leases of the calls that were not made (a probing
// circuit, a Retry-After, a lease too near its end) so that they are tried
// again, after a short pause that keeps the next round from being a busy
// loop of leases and releases. It returns their emails.
func (b *batch) giveBack(ctx context.Context, deferred []*item) ([]string, error) {
	if len(deferred) == 0 {
		return nil, nil
	}
	emails := make([]string, len(deferred))
	for i, it := range deferred {
		emails[i] = it.c.Email
	}
	if _, err := withDB(ctx, b.w, "release", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, b.w.store.Release(ctx, b.owner, emails)
	}); err != nil {
		b.handBack(deferred)
		return nil, fmt.Errorf("release customers: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
	return emails, nil
}

// publish sends the retry copies and dead letters and waits for the
// broker's confirms: before anything is settled or acked.
func (b *batch) publish(ctx context.Context, pub *rabbit.Publisher) error {
	var msgs []rabbit.Message
	now := time.Now()
	for _, it := range b.items {
		switch it.out.kind {
		case outcomeDead:
			msgs = append(msgs, deadLetterOf(b.w.top, it.d, it.out, b.w.cfg.Name, now))
		case outcomeRetry:
			msgs = append(msgs, retryCopyOf(b.w.top, it.d, it.out))
		case outcomeNone, outcomeAck:
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := pub.PublishAll(ctx, msgs); err != nil {
		b.handBack(nil)
		return fmt.Errorf("publish %d retry and dead-letter messages: %w", len(msgs), err)
	}
	return nil
}

// settle writes the CRM results and releases their leases. The retry copies
// and dead letters are out, so the results are final: stopped while writing
// them, it makes one last try, or the leases expire and a redelivery drives
// the customers again.
func (b *batch) settle(ctx context.Context) error {
	if len(b.results) == 0 {
		return nil
	}
	_, err := withDB(ctx, b.w, "settle", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, b.w.store.Settle(ctx, b.owner, b.results)
	})
	if err == nil {
		return nil
	}
	last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if lerr := b.w.store.Settle(last, b.owner, b.results); lerr != nil {
		b.w.logger.Warn("could not write CRM results; their leases expire on their own", "error", lerr, "lease", b.w.cfg.Lease.String())
	}
	return fmt.Errorf("settle customers: %w", err)
}

// handBack gives back the leases of a batch that cannot finish, so that
// its redelivery does not wait for them to expire. A synced answer is
// final and kept; a rejection or exhaustion is final only with its dead
// letter, which was not sent: back to pending, the attempt kept. Of open
// items, one whose request reached the CRM keeps its lease until it
// expires, so that nobody calls alongside it; the others get their lease
// and attempt back.
func (b *batch) handBack(open []*item) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(b.results) > 0 {
		back := make([]pgstore.CRMResult, len(b.results))
		for i, r := range b.results {
			back[i] = r
			if r.State != pgstore.StateSynced {
				back[i] = pgstore.CRMResult{Email: r.Email, State: pgstore.StatePending, Error: "batch not completed"}
			}
		}
		if err := b.w.store.Settle(ctx, b.owner, back); err != nil {
			b.w.logger.Warn("could not release leases; they expire on their own", "error", err, "lease", b.w.cfg.Lease.String())
		}
	}
	var uncalled []string
	for _, it := range open {
		if !it.called.Load() {
			uncalled = append(uncalled, it.c.Email)
		}
	}
	if len(uncalled) > 0 {
		if err := b.w.store.Release(ctx, b.owner, uncalled); err != nil {
			b.w.logger.Warn("could not release leases; they expire on their own", "error", err, "lease", b.w.cfg.Lease.String())
		}
	}
}

// tally counts what the finished batch came to.
type tally struct {
	deliveries, acked, retried int
	dead                       map[string]int // by reason
}

func (b *batch) tally() tally {
	t := tally{deliveries: len(b.items), dead: map[string]int{}}
	for _, it := range b.items {
		switch it.out.kind {
		case outcomeDead:
			t.dead[it.out.reason]++
		case outcomeRetry:
			t.retried++
		case outcomeAck, outcomeNone:
			t.acked++
		}
	}
	return t
}

// log reports the batch: a line per dead letter, and one debug line.
func (b *batch) log(t tally) {
	dead := 0
	for _, it := range b.items {
		if it.out.kind == outcomeDead {
			dead++
			b.w.logger.Warn("dead-lettered", "reason", it.out.reason, "error", errText(it.out.err),
				"email", it.c.Email, "message_id", it.d.MessageId, "attempts", it.out.attempts)
		}
	}
	b.w.logger.Debug("batch done", "deliveries", t.deliveries, "acked", t.acked, "retried", t.retried, "dead_lettered", dead)
}
