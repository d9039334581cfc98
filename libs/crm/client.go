// Package crm is the client of the CRM's customer API: one JSON POST per
// customer, guarded by an Idempotency-Key so that retrying a call whose answer
// was lost never creates a second customer.
//
// The client makes exactly one attempt per call. Retrying is the caller's
// business (the consumer schedules retries through RabbitMQ), so every error
// answers the questions the caller needs: is it permanent (IsPermanent), is it
// worth another try (IsTemporary), how long did the CRM ask us to wait
// (RetryAfter), or did the caller itself give up (errors.Is(err,
// context.Canceled)).
package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
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
}

// WithDefaults returns a copy of c with the zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
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
	return nil
}

// Client creates customers in the CRM. It is safe for concurrent use.
type Client struct {
	cfg       Config
	hc        *http.Client
	customers string // absolute URL of the customers collection
}

// New returns a Client for cfg. When hc is nil the client uses its own
// transport, sized for a few dozen concurrent calls to the one CRM host, and
// does not follow redirects (a 303 would silently turn the POST into a GET).
func New(cfg Config, hc *http.Client) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = defaultHTTPClient()
	}
	return &Client{
		cfg:       cfg,
		hc:        hc,
		customers: strings.TrimRight(cfg.BaseURL, "/") + "/customers",
	}, nil
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
	body, err := json.Marshal(cust)
	if err != nil {
		return Result{}, fmt.Errorf("create customer: encode body: %w", err)
	}

	reqCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.customers, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("create customer: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Idempotency-Key", idempotencyKey)
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return Result{}, c.transportError(ctx, "create customer", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		_ = resp.Body.Close()
	}()

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
			return Result{}, c.transportError(ctx, "create customer: read answer", err)
		}
		return res, nil
	default:
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil && ctx.Err() != nil {
			return Result{}, fmt.Errorf("create customer: %w", ctx.Err())
		}
		// A body cut short by the timeout still leaves a valid status to classify.
		return Result{}, &StatusError{
			Status:     resp.StatusCode,
			Body:       string(raw),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	}
}

// bodyError marks an answer body that was read in full but is not what the
// CRM promised; unlike a read error it is not worth a retry.
type bodyError struct{ err error }

func (e bodyError) Error() string { return e.err.Error() }
func (e bodyError) Unwrap() error { return e.err }

func isBodyError(err error) bool {
	_, ok := errors.AsType[bodyError](err)
	return ok
}

func readID(r io.Reader) (string, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxSuccessBody))
	if err != nil {
		return "", err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return "", nil
	}
	var answer struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return "", bodyError{fmt.Errorf("decode answer: %w", err)}
	}
	return answer.ID, nil
}

// transportError turns an error from the HTTP round trip into what the caller
// needs to know: the caller's own ctx ended (returned as ctx.Err(), wrapped),
// or the CRM could not be reached or did not answer in time (a transient
// *TransportError).
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		// Not wrapped as context.DeadlineExceeded: that belongs to the caller's
		// ctx, and this is the CRM being slow.
		return &TransportError{Op: op, Err: fmt.Errorf("%w after %s", ErrTimeout, c.cfg.Timeout), timeout: true}
	}
	return &TransportError{Op: op, Err: err}
}

func isTimeout(err error) bool {
	t, ok := errors.AsType[interface {
		error
		Timeout() bool
	}](err)
	return ok && t.Timeout()
}
