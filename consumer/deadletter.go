package main

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/rabbit"
)

// Dead-letter reasons, in the deadletter.HeaderReason header.
const (
	reasonInvalidMessage   = "invalid_message"
	reasonDatabaseRejected = "database_rejected"
	reasonCRMRejected      = "crm_rejected"
	reasonCRMExhausted     = "crm_attempts_exhausted"
)

// deadLetterOf is the dead letter of d: its copy to the dead-letter
// exchange, stamped with why, after how many attempts, when and by whom.
func deadLetterOf(top rabbit.Topology, d amqp.Delivery, o outcome, consumer string, now time.Time) rabbit.Message {
	m := deadletter.Copy(d)
	if o.err != nil {
		m.Headers[deadletter.HeaderLastError] = errText(o.err)
	}
	m.Headers[deadletter.HeaderReason] = o.reason
	m.Headers[deadletter.HeaderAttempts] = int64(o.attempts)
	m.Headers[deadletter.HeaderDeadLetteredAt] = now.UTC().Format(time.RFC3339)
	m.Headers[deadletter.HeaderConsumer] = consumer
	m.Exchange, m.Key = top.DeadExchange(), rabbit.DeadKey
	return m
}

// retryCopyOf is the copy of d that waits in the retry queue of its
// attempt's step, then goes back to the work queue.
func retryCopyOf(top rabbit.Topology, d amqp.Delivery, o outcome) rabbit.Message {
	m := deadletter.Copy(d)
	if o.err != nil {
		m.Headers[deadletter.HeaderLastError] = errText(o.err)
	}
	step := min(max(o.attempts-1, 0), len(top.RetryDelays)-1)
	m.Headers[deadletter.HeaderRetryAttempt] = int64(o.attempts)
	// Jitter below the queue's TTL spreads a burst of retries out; the
	// queue's own TTL stays the upper bound.
	delay := top.RetryDelays[step]
	jittered := delay - time.Duration(rand.Int64N(int64(delay)/5+1)) //nolint:gosec // jitter needs no secure source
	m.Expiration = strconv.FormatInt(max(jittered.Milliseconds(), 1), 10)
	m.Exchange, m.Key = "", top.RetryQueue(step)
	return m
}

// errText is an error as Postgres and message headers can take it: valid
// UTF-8 (a CRM's answer may be anything), no NUL, at most 1 KiB.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return truncate(err.Error(), 1024)
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
