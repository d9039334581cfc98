package crm

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody bounds StatusError.Body: enough for the CRM's reason, small
// enough to travel in a dead-letter header.
const maxErrorBody = 1 << 10

// maxRetryAfter caps a Retry-After so a wild value cannot park a worker for
// days or overflow a time.Duration.
const maxRetryAfter = 24 * time.Hour

var (
	// ErrRejected is matched (errors.Is) by a *StatusError the CRM will never
	// accept as sent: a 4xx other than 408 and 429.
	ErrRejected = errors.New("crm rejected the request")
	// ErrTimeout is matched by a *TransportError when the CRM did not answer
	// within Config.Timeout.
	ErrTimeout = errors.New("crm request timed out")
)

// StatusError is a CRM answer other than 2xx or 409.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Body is the start of the answer's body (at most 1 KiB), the CRM's reason.
	Body string
	// RetryAfter is the wait the CRM asked for in Retry-After (seconds or an
	// HTTP date), zero when absent or already past.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "crm answered %d %s", e.Status, http.StatusText(e.Status))
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if body := strings.TrimSpace(e.Body); body != "" {
		b.WriteString(": ")
		b.WriteString(body)
	}
	return b.String()
}

// Permanent reports an answer that will not change on retry: a 4xx other than
// 408 (Request Timeout) and 429 (Too Many Requests).
func (e *StatusError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 &&
		e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// Temporary reports an answer worth retrying later: 5xx, 408 and 429.
func (e *StatusError) Temporary() bool {
	return e.Status >= 500 ||
		e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// Is makes errors.Is(err, ErrRejected) true for a permanent answer.
func (e *StatusError) Is(target error) bool {
	return target == ErrRejected && e.Permanent()
}

// TransportError is a call that got no usable answer: the CRM could not be
// reached, the connection broke, or the answer did not come within
// Config.Timeout. Always worth another try.
type TransportError struct {
	// Op says what was being done.
	Op string
	// Err is the underlying error; for a timeout it wraps ErrTimeout.
	Err     error
	timeout bool
}

func (e *TransportError) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// Temporary is always true: a transport failure says nothing about the request.
func (e *TransportError) Temporary() bool { return true }

// Timeout reports that the CRM did not answer within Config.Timeout.
func (e *TransportError) Timeout() bool { return e.timeout }

// IsPermanent reports whether err is an answer the CRM will repeat whatever the
// number of retries (a *StatusError with a 4xx other than 408 and 429). Every
// other error, including the caller's own cancellation, is false.
func IsPermanent(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	return ok && se.Permanent()
}

// IsTemporary reports whether err is worth another try later: a 5xx, 408 or
// 429 answer, a timeout or a network failure. The caller's own cancellation is
// false: that is a shutdown, not a CRM failure.
func IsTemporary(err error) bool {
	t, ok := errors.AsType[interface {
		error
		Temporary() bool
	}](err)
	return ok && t.Temporary()
}

// RetryAfter returns the wait a 429 or 503 answer asked for in its
// Retry-After header. ok is false for any other error or when the header was
// absent.
func RetryAfter(err error) (d time.Duration, ok bool) {
	se, isStatus := errors.AsType[*StatusError](err)
	if !isStatus || se.RetryAfter <= 0 {
		return 0, false
	}
	if se.Status != http.StatusTooManyRequests && se.Status != http.StatusServiceUnavailable {
		return 0, false
	}
	return se.RetryAfter, true
}

// parseRetryAfter reads a Retry-After value, either delay-seconds or an
// HTTP date (RFC 9110 section 10.2.3). It returns 0 for an absent, malformed
// or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// ErrNotSent is matched by the error of a request that was never sent: the
// rate limiter could not let it go before the time set with WithSendBy. The
// CRM saw nothing, so no attempt was made.
var ErrNotSent = errors.New("crm request not sent")
