package crm

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// CRM creates customers, many per request where the CRM allows it. It is what
// the consumer sees; each adapter (the generic JSON API in generic.go,
// HubSpot in hubspot.go) lives in a file of its own.
type CRM interface {
	// Create creates each customer of reqs once per its Key. It returns one
	// Answer per request, in the order of reqs, or an error when the request
	// as a whole failed (a 429, 5xx, 401/403, timeout or lost connection):
	// that error then stands for every customer of reqs, and answers the
	// same questions (IsPermanent, IsTemporary, RetryAfter, ErrNotSent).
	//
	// A batch the CRM refuses as too large (413) is split and sent again;
	// what parts of it got is in their customers' answers.
	Create(ctx context.Context, reqs []Request) ([]Answer, error)
}

// Request is one customer to create and its idempotency key, stable per
// customer: sending it again after a lost answer replays the first answer.
type Request struct {
	Key      string
	Customer Customer
}

// Answer is what the CRM said about one customer: Err is nil when it was
// created or existed already (Result says which), otherwise an error that
// answers IsPermanent, IsTemporary and RetryAfter like a single call's.
type Answer struct {
	Result Result
	Err    error
}

// Limiter paces the requests sent to the CRM. Every adapter waits on it
// before each HTTP request (a split batch included) and tells it when the
// CRM asks to slow down.
type Limiter interface {
	// Wait blocks until a request may be sent. When that would be later
	// than by (the zero time: no bound) it returns an error at once,
	// without using up a request, and the request is not sent.
	Wait(ctx context.Context, by time.Time) error
	// Slow tells every user of the limiter to send nothing for d: the CRM
	// answered 429 (or 503 with Retry-After).
	Slow(ctx context.Context, d time.Duration)
}

// Kinds lists the CRM adapters Open knows.
const Kinds = "generic|hubspot"

// Open returns the adapter for kind ("generic" or "hubspot") configured by
// cfg, with its own HTTP client.
func Open(kind string, cfg Config) (CRM, error) {
	switch kind {
	case "", "generic":
		return New(cfg, nil)
	case "hubspot":
		return NewHubSpot(cfg, nil)
	default:
		return nil, fmt.Errorf("crm kind %q: want %s", kind, Kinds)
	}
}

type sendByKey struct{}

// WithSendBy returns a ctx under which no request is started after t:
// Create answers ErrNotSent instead, for the customers not sent yet. A
// caller holding a lease uses it so that no call outlives the lease.
func WithSendBy(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, sendByKey{}, t)
}

func sendBy(ctx context.Context) time.Time {
	t, _ := ctx.Value(sendByKey{}).(time.Time)
	return t
}

// DefaultSlowDown is how long a 429 without a usable Retry-After pauses
// every caller of the limiter.
const DefaultSlowDown = time.Second

// waitTurn waits for the limiter, if any, and checks the send-by bound.
func waitTurn(ctx context.Context, lim Limiter, op string) error {
	by := sendBy(ctx)
	if lim != nil {
		if err := lim.Wait(ctx, by); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", op, ctx.Err())
			}
			return fmt.Errorf("%s: %w: %w", op, ErrNotSent, err)
		}
	}
	if !by.IsZero() && time.Now().After(by) {
		return fmt.Errorf("%s: %w: past its send-by time", op, ErrNotSent)
	}
	return nil
}

// slowDown tells the limiter about an answer that asks every caller to wait:
// a 429 (with or without Retry-After) or a 503 with Retry-After.
func slowDown(ctx context.Context, lim Limiter, status int, retryAfter time.Duration) {
	if lim == nil {
		return
	}
	switch {
	case retryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable):
		lim.Slow(ctx, retryAfter)
	case status == http.StatusTooManyRequests:
		lim.Slow(ctx, DefaultSlowDown)
	}
}

// chunks cuts reqs into pieces of at most n.
func chunks(reqs []Request, n int) [][]Request {
	if n <= 0 || len(reqs) <= n {
		return [][]Request{reqs}
	}
	var out [][]Request
	for len(reqs) > n {
		out = append(out, reqs[:n])
		reqs = reqs[n:]
	}
	return append(out, reqs)
}

// sendChunks sends reqs in pieces of at most n through send, one after the
// other, and gathers the answers in order. A piece that fails as a whole
// gives its error to its customers; when there is one piece, its error is
// returned as is.
func sendChunks(ctx context.Context, reqs []Request, n int, send func(context.Context, []Request) ([]Answer, error)) ([]Answer, error) {
	parts := chunks(reqs, n)
	if len(parts) == 1 {
		return send(ctx, reqs)
	}
	out := make([]Answer, 0, len(reqs))
	for _, part := range parts {
		answers, err := send(ctx, part)
		if err != nil {
			for range part {
				out = append(out, Answer{Err: err})
			}
			continue
		}
		out = append(out, answers...)
	}
	return out, nil
}
