// Package crm is the client of the CRM's customer API: customers created
// one per JSON POST or many per batch request, each guarded by its own
// idempotency key so that retrying a call whose answer was lost never
// creates a second customer. The consumer sees the CRM interface; the
// generic JSON API (Client) and HubSpot (HubSpot) are its adapters.
//
// The client makes exactly one attempt per call. Retrying is the caller's
// business (the consumer schedules retries through RabbitMQ), so every error
// answers the questions the caller needs: is it permanent (IsPermanent), is it
// worth another try (IsTemporary), how long did the CRM ask us to wait
// (RetryAfter), or did the caller itself give up (errors.Is(err,
// context.Canceled)).
package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	gojson "github.com/goccy/go-json"
)

const (
	// DefaultTimeout bounds one request when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultUserAgent is sent when Config.UserAgent is empty.
	DefaultUserAgent = "custimport-crm/1"

	// maxSuccessBody bounds how much of a 2xx/409 answer is read to find the id.
	maxSuccessBody = 64 << 10
	// maxDrain bounds how much of an unread body is discarded to keep the
	// connection reusable; past it, closing the connection is cheaper.
	maxDrain = 64 << 10
)

// Config configures a Client. The zero value is not usable: BaseURL is required.
type Config struct {
	// BaseURL is the CRM root, for example "http://mockcrm:8081"; customers are
	// created at BaseURL + "/customers". Required; http or https.
	BaseURL string
	// Token, when set, is sent as "Authorization: Bearer <Token>". It never
	// appears in errors or logs.
	Token string
	// Timeout bounds one request, from dialling to reading the answer's body.
	// Default DefaultTimeout (10s).
	Timeout time.Duration
	// UserAgent is sent in the User-Agent header. Default DefaultUserAgent.
	UserAgent string
	// MaxBatch is the most customers sent in one batch request; a larger
	// Create is cut into requests of this size. It shrinks on its own when
	// the CRM answers 413 with a smaller maximum. Default DefaultMaxBatch
	// (100).
	MaxBatch int
	// Limiter, when set, is waited on before every request and told when
	// the CRM asks to slow down. Default none.
	Limiter Limiter
}

// DefaultMaxBatch is Config.MaxBatch when zero: what HubSpot takes per batch
// and what mockcrm serves by default.
const DefaultMaxBatch = 100

// WithDefaults returns a copy of c with the zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	return c
}

func (c Config) validate() error {
	if c.BaseURL == "" {
		return errors.New("crm config: BaseURL is required")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		// url.Parse quotes the whole input, which may hold credentials.
		return errors.New("crm config: BaseURL is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("crm config: BaseURL %s: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("crm config: BaseURL %s: host is missing", u.Redacted())
	}
	if c.Timeout < 0 {
		return fmt.Errorf("crm config: Timeout must not be negative, got %s", c.Timeout)
	}
	if c.MaxBatch < 1 {
		return fmt.Errorf("crm config: MaxBatch must be 1 or more, got %d", c.MaxBatch)
	}
	return nil
}

// Client is the adapter of the generic JSON API (POST /customers, POST
// /customers/batch). It is safe for concurrent use.
type Client struct {
	poster
	customers string // absolute URL of the customers collection
	batch     string // absolute URL of the batch endpoint
	// maxBatch starts at cfg.MaxBatch and only shrinks, when a 413 says
	// the CRM takes fewer.
	maxBatch atomic.Int64
}

// New returns a Client for cfg. When hc is nil the client uses its own
// transport, sized for a few dozen concurrent calls to the one CRM host, and
// does not follow redirects (a 303 would silently turn the POST into a GET).
func New(cfg Config, hc *http.Client) (*Client, error) {
	p, err := newPoster(cfg, hc)
	if err != nil {
		return nil, err
	}
	c := &Client{poster: p, customers: p.url("/customers"), batch: p.url("/customers/batch")}
	c.maxBatch.Store(int64(p.cfg.MaxBatch))
	return c, nil
}

func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The default keeps 2 idle connections per host: with ~64 concurrent calls
	// to one CRM host almost every call would dial anew.
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 128
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Customer is what the CRM stores about a customer. Empty fields are omitted
// from the request.
type Customer struct {
	Email      string            `json:"email,omitempty"`
	Name       string            `json:"name,omitempty"`
	FirstName  string            `json:"first_name,omitempty"`
	LastName   string            `json:"last_name,omitempty"`
	Phone      string            `json:"phone,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Result is the CRM's answer to a successful call.
type Result struct {
	// ID is the CRM's id for the customer; it may be empty on a 409 when the
	// CRM does not say which customer already exists.
	ID string
	// Status is the HTTP status code (2xx or 409).
	Status int
	// Existed reports a 409: the customer was already there, which for an
	// exactly-once import means it is synced.
	Existed bool
	// Replayed reports that the CRM answered from its idempotency store
	// (header "Idempotent-Replayed: true"): an earlier call with the same key
	// did the work.
	Replayed bool
}

// CreateCustomer creates cust in the CRM, once per idempotencyKey: calling it
// again with the same key after a lost answer returns the first answer instead
// of creating a second customer. The key must be stable per customer.
//
// A 2xx or 409 answer returns a Result and a nil error. Any other answer is a
// *StatusError; a network failure or the per-request timeout is a
// *TransportError. When ctx itself ends, the error wraps ctx.Err() and nothing
// else, so the caller can tell its own shutdown from a CRM failure.
func (c *Client) CreateCustomer(ctx context.Context, idempotencyKey string, cust Customer) (Result, error) {
	if idempotencyKey == "" {
		return Result{}, errors.New("create customer: idempotency key is empty")
	}
	body, err := gojson.Marshal(cust)
	if err != nil {
		return Result{}, fmt.Errorf("create customer: encode body: %w", err)
	}
	resp, done, err := c.postBody(ctx, "create customer", c.customers, body, idempotencyKey) //nolint:bodyclose // done drains and closes it
	if err != nil {
		return Result{}, err
	}
	defer done()

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusConflict:
		res := Result{
			Status:   resp.StatusCode,
			Existed:  resp.StatusCode == http.StatusConflict,
			Replayed: strings.EqualFold(resp.Header.Get("Idempotent-Replayed"), "true"),
		}
		id, err := readID(resp.Body)
		switch {
		case err == nil:
			res.ID = id
		case isBodyError(err):
			// The CRM said it created (or has) the customer; an answer we
			// cannot parse does not undo that, and retrying would only replay it.
		default:
			// Cut short: a retry with the same key replays the answer.
			return Result{}, transportError(ctx, "create customer: read answer", c.cfg.Timeout, err)
		}
		return res, nil
	default:
		return Result{}, c.statusError(ctx, "create customer", resp)
	}
}

// Create implements CRM. One customer goes through the single call (POST
// /customers, as a CRM without batches knows it); more go to POST
// /customers/batch, at most MaxBatch per request.
func (c *Client) Create(ctx context.Context, reqs []Request) ([]Answer, error) {
	if len(reqs) == 1 {
		res, err := c.CreateCustomer(ctx, reqs[0].Key, reqs[0].Customer)
		if err != nil {
			return nil, err
		}
		return []Answer{{Result: res}}, nil
	}
	return sendChunks(ctx, reqs, int(c.maxBatch.Load()), c.sendBatch)
}

// batchCustomer is one customer of a batch request: the single call's body
// and its key.
type batchCustomer struct {
	Customer
	IdempotencyKey string `json:"idempotency_key"`
}

// marshalBatch writes the body of POST /customers/batch. The generic
// adapter's request bodies and batch reply go through go-json, which writes
// and reads them as encoding/json does (json_test.go holds it to that) in
// half the time and a hundredth of the allocations: a batch is a hundred
// customers, and encoding/json spent more on finding their fields than on
// writing them.
func marshalBatch(reqs []Request) ([]byte, error) {
	body := struct {
		Customers []batchCustomer `json:"customers"`
	}{Customers: make([]batchCustomer, len(reqs))}
	for i, r := range reqs {
		body.Customers[i] = batchCustomer{Customer: r.Customer, IdempotencyKey: r.Key}
	}
	return gojson.Marshal(body)
}

// batchReply is the 200 answer of POST /customers/batch.
type batchReply struct {
	Results []batchResult `json:"results"`
}

// decodeJSON reads the reply with go-json (see marshalBatch).
func (r *batchReply) decodeJSON(raw []byte) error { return gojson.Unmarshal(raw, r) }

// batchResult is one customer's answer in a batch reply.
type batchResult struct {
	Status int    `json:"status"`
	ID     string `json:"id"`
	Error  string `json:"error"`
}

// maxBatchReply bounds a batch reply: a few hundred bytes per customer.
const maxBatchReply = 4 << 20

// sendBatch sends one batch request. A 413 splits it: in pieces of the
// maximum the CRM names (max_batch in its answer), else in halves, and the
// client sends at most that many per request from then on.
func (c *Client) sendBatch(ctx context.Context, reqs []Request) ([]Answer, error) {
	const op = "create customers"
	for _, r := range reqs {
		if r.Key == "" {
			return nil, fmt.Errorf("%s: idempotency key of %s is empty", op, r.Customer.Email)
		}
	}
	body, err := marshalBatch(reqs)
	if err != nil {
		return nil, fmt.Errorf("%s: encode body: %w", op, err)
	}
	resp, done, err := c.postBody(ctx, op, c.batch, body, "") //nolint:bodyclose // done drains and closes it
	if err != nil {
		return nil, err
	}
	defer done()

	switch {
	case resp.StatusCode == http.StatusRequestEntityTooLarge && len(reqs) > 1:
		var tooLarge struct {
			MaxBatch int `json:"max_batch"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&tooLarge)
		n := len(reqs) / 2
		if tooLarge.MaxBatch > 0 && tooLarge.MaxBatch < len(reqs) {
			n = tooLarge.MaxBatch
		}
		c.shrinkMaxBatch(n)
		return sendChunks(ctx, reqs, n, c.sendBatch)
	case resp.StatusCode != http.StatusOK:
		return nil, c.statusError(ctx, op, resp)
	}

	var reply batchReply
	if err := c.readReply(ctx, op, resp, &reply); err != nil {
		return nil, err
	}
	if len(reply.Results) != len(reqs) {
		// Whatever the CRM did, sending the same keys again is answered
		// from its idempotency store.
		return nil, &TransportError{Op: op, Err: fmt.Errorf("answer has %d results for %d customers", len(reply.Results), len(reqs))}
	}
	answers := make([]Answer, len(reqs))
	for i, r := range reply.Results {
		if r.Status < 100 || r.Status > 599 {
			return nil, &TransportError{Op: op, Err: fmt.Errorf("result %d has no valid status (%d)", i, r.Status)}
		}
		answers[i] = batchAnswer(r)
	}
	return answers, nil
}

// batchAnswer turns one customer's result into its Answer: 201 created, 200
// a replay of an earlier creation with the same key, 409 existing (all
// three synced), anything else a *StatusError of that customer alone.
func batchAnswer(r batchResult) Answer {
	switch {
	case r.Status >= 200 && r.Status < 300, r.Status == http.StatusConflict:
		return Answer{Result: Result{
			ID:       r.ID,
			Status:   r.Status,
			Existed:  r.Status == http.StatusConflict,
			Replayed: r.Status == http.StatusOK,
		}}
	default:
		return Answer{Err: &StatusError{Status: r.Status, Body: truncateBody([]byte(r.Error))}}
	}
}

func (c *Client) shrinkMaxBatch(n int) {
	for {
		cur := c.maxBatch.Load()
		if int64(n) >= cur || c.maxBatch.CompareAndSwap(cur, int64(n)) {
			return
		}
	}
}

// truncateBody keeps at most maxErrorBody bytes of a CRM's text.
func truncateBody(b []byte) string {
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
	}
	return string(b)
}
