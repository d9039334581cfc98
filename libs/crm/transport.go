package crm

// The HTTP transport both adapters share: the limiter's turn, one JSON POST
// within the per-request timeout, the reply read or turned into an error
// that answers IsPermanent, IsTemporary and RetryAfter.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// poster sends the JSON POSTs of an adapter: the limiter first, then the
// request within the per-request timeout, with the token as a bearer token.
type poster struct {
	cfg Config
	hc  *http.Client
}

// newPoster checks cfg, with its defaults, and takes hc or a client of its
// own (see New).
func newPoster(cfg Config, hc *http.Client) (poster, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return poster{}, err
	}
	if hc == nil {
		hc = defaultHTTPClient()
	}
	return poster{cfg: cfg, hc: hc}, nil
}

// url is the absolute URL of path below the CRM's base URL.
func (c *poster) url(path string) string {
	return strings.TrimRight(c.cfg.BaseURL, "/") + path
}

// post sends body as JSON to url after waiting for the limiter, within the
// per-request timeout; key, when set, is the Idempotency-Key. The caller
// reads the answer and then calls done, which drains and closes it.
func (c *poster) post(ctx context.Context, op, url string, v any, key string) (*http.Response, func(), error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: encode body: %w", op, err)
	}
	return c.postBody(ctx, op, url, body, key)
}

// postBody is post with the body already encoded.
func (c *poster) postBody(ctx context.Context, op, url string, body []byte, key string) (*http.Response, func(), error) {
	if err := waitTurn(ctx, c.cfg.Limiter, op); err != nil {
		return nil, nil, err
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: build request: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, nil, transportError(ctx, op, c.cfg.Timeout, err)
	}
	return resp, func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		_ = resp.Body.Close()
		cancel()
	}, nil
}

// readReply reads a batch answer's JSON into v. One cut short, or that is not
// JSON, is transient: sending the same customers again is harmless.
func (c *poster) readReply(ctx context.Context, op string, resp *http.Response, v any) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchReply))
	if err != nil {
		return transportError(ctx, op+": read answer", c.cfg.Timeout, err)
	}
	// A reply that names its own decoder is read with it: the generic batch
	// reply with go-json (see marshalBatch); HubSpot's, which no test holds
	// go-json to, with encoding/json.
	unmarshal := json.Unmarshal
	if d, ok := v.(interface{ decodeJSON([]byte) error }); ok {
		unmarshal = func(raw []byte, _ any) error { return d.decodeJSON(raw) }
	}
	if err := unmarshal(raw, v); err != nil {
		return &TransportError{Op: op, Err: fmt.Errorf("answer is not a batch result: %s", truncateBody(raw))}
	}
	return nil
}

// statusError reads an answer other than 2xx/409 into a *StatusError and
// tells the limiter when it asks every caller to slow down.
func (c *poster) statusError(ctx context.Context, op string, resp *http.Response) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	// A body cut short by the timeout still leaves a valid status to classify.
	se := &StatusError{
		Status:     resp.StatusCode,
		Body:       string(raw),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	slowDown(ctx, c.cfg.Limiter, se.Status, se.RetryAfter)
	return se
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
func transportError(ctx context.Context, op string, timeout time.Duration, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		// Not wrapped as context.DeadlineExceeded: that belongs to the caller's
		// ctx, and this is the CRM being slow.
		return &TransportError{Op: op, Err: fmt.Errorf("%w after %s", ErrTimeout, timeout), timeout: true}
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
