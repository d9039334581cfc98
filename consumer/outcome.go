package main

import (
	"errors"
	"net/http"

	"github.com/custimport/custimport/libs/crm"
	"github.com/custimport/custimport/libs/pgstore"
)

type outcomeKind int

const (
	outcomeNone  outcomeKind = iota // not decided (yet)
	outcomeAck                      // done: synced now, or already
	outcomeRetry                    // a copy waits in a retry queue
	outcomeDead                     // given up: a copy goes to the dead-letter queue
)

// outcome is what a delivery comes to. Every error becomes one here, in
// classify (or a constructor below), and nowhere else; the word means
// nothing else in this package.
type outcome struct {
	kind     outcomeKind
	reason   string // dead-letter reason, or why it was acked
	err      error
	attempts int
	crmID    string
}

func ack(why string) outcome { return outcome{kind: outcomeAck, reason: why} }

func deadLetter(reason string, err error) outcome {
	return outcome{kind: outcomeDead, reason: reason, err: err}
}

// waitLease sends a copy through the first retry queue without counting an
// attempt: another worker holds the customer, and if it dies the copy finds
// the lease expired and drives the customer itself.
func waitLease() outcome { return outcome{kind: outcomeRetry, reason: "leased elsewhere"} }

// classify turns a CRM answer into an outcome:
//   - 2xx and 409 (it exists already): synced;
//   - a permanent refusal (4xx but 408 and 429): rejected, dead-lettered;
//     except 401 and 403, which say our credentials are wrong, not the
//     customer: those count as failures and open the circuit, rather than
//     rejecting a whole import;
//   - anything else (5xx, 408, 429, timeouts, connection errors): retried
//     through the retry queues, failed and dead-lettered once attempts are
//     exhausted.
func classify(res crm.Result, err error, attempts, maxAttempts int) outcome {
	switch {
	case err == nil:
		return outcome{kind: outcomeAck, reason: "synced", attempts: attempts, crmID: res.ID}
	case crm.IsPermanent(err) && !isAuthError(err):
		return outcome{kind: outcomeDead, reason: reasonCRMRejected, err: err, attempts: attempts}
	case attempts >= maxAttempts:
		return outcome{kind: outcomeDead, reason: reasonCRMExhausted, err: err, attempts: attempts}
	default:
		return outcome{kind: outcomeRetry, reason: "crm_transient", err: err, attempts: attempts}
	}
}

// crmResult is the store's side of a CRM call's outcome: the state the
// customer moves to.
func (o outcome) crmResult(email string) pgstore.CRMResult {
	switch {
	case o.kind == outcomeAck:
		return pgstore.CRMResult{Email: email, State: pgstore.StateSynced, CRMID: o.crmID}
	case o.kind == outcomeDead && o.reason == reasonCRMRejected:
		return pgstore.CRMResult{Email: email, State: pgstore.StateRejected, Error: errText(o.err)}
	case o.kind == outcomeDead:
		return pgstore.CRMResult{Email: email, State: pgstore.StateFailed, Error: errText(o.err)}
	default:
		return pgstore.CRMResult{Email: email, State: pgstore.StatePending, Error: errText(o.err)}
	}
}

// isRateLimited reports a 429: the CRM is up and asks us to slow down.
func isRateLimited(err error) bool {
	se, ok := errors.AsType[*crm.StatusError](err)
	return ok && se.Status == http.StatusTooManyRequests
}

// isAuthError reports a 401 or 403: the CRM refuses us, not the customer.
func isAuthError(err error) bool {
	se, ok := errors.AsType[*crm.StatusError](err)
	return ok && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)
}
