package crmmock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config says how flaky the server is. It can be changed while serving
// (Server.SetConfig, POST /admin/config).
type Config struct {
	// FailRate is the share of requests (single or batch) answered 503
	// before anything is done. 0..1, default 0.
	FailRate float64
	// CustomerFailRate is the share of customers answered 503 on their own,
	// nothing created: the customer's result in a batch, the whole answer of
	// a single call. 0..1, default 0.
	CustomerFailRate float64
	// FailAfterCreateRate is the share of requests that created someone
	// whose answer is lost: replaced by a 503 after the work is done. Only a
	// retry with the same keys (answered as replays) tells the client so.
	// --lost-reply-rate. 0..1, default 0.
	FailAfterCreateRate float64
	// Latency is added to every /customers request; a client that gives up
	// ends the wait. Default 0.
	Latency time.Duration
	// LatencyJitter adds a uniformly random 0..LatencyJitter to Latency.
	// Default 0.
	LatencyJitter time.Duration
	// RateLimit is the number of requests (single and batch alike) per
	// second the whole server accepts from all its callers together (burst:
	// one second's worth, at least one); above it the answer is 429 with a
	// Retry-After of the seconds until the next request is accepted. 0, the
	// default, means no limit.
	RateLimit float64
	// MaxBatch is the most customers a batch request may hold; above it the
	// answer is 413 naming the maximum. Default DefaultMaxBatch (100).
	MaxBatch int
	// RejectDomains lists email domains answered 422 (permanent). Default none.
	RejectDomains []string
	// UniqueEmail answers 409 to a creation of an email that already exists
	// under a different Idempotency-Key, and counts a conflict. When false,
	// such a creation makes a second customer. DefaultConfig sets it true;
	// the zero Config has it false.
	UniqueEmail bool
	// Token, when set, is the bearer token every /customers request must carry;
	// without it the answer is 401.
	Token string
	// Seed seeds the random source deciding injected failures and jitter;
	// 0 seeds from the clock. Only read by New.
	Seed int64
}

// DefaultMaxBatch is Config.MaxBatch by default.
const DefaultMaxBatch = 100

// DefaultConfig is a well-behaved CRM: no failures, no latency, no rate
// limit, unique emails, batches of up to 100.
func DefaultConfig() Config {
	return Config{UniqueEmail: true, MaxBatch: DefaultMaxBatch}
}

// Validate reports the first field (named as in the admin API) that is out of range.
func (c Config) Validate() error {
	switch {
	case c.FailRate < 0 || c.FailRate > 1:
		return fmt.Errorf("fail_rate must be between 0 and 1, got %v", c.FailRate)
	case c.CustomerFailRate < 0 || c.CustomerFailRate > 1:
		return fmt.Errorf("customer_fail_rate must be between 0 and 1, got %v", c.CustomerFailRate)
	case c.FailAfterCreateRate < 0 || c.FailAfterCreateRate > 1:
		return fmt.Errorf("lost_reply_rate must be between 0 and 1, got %v", c.FailAfterCreateRate)
	case c.MaxBatch < 0:
		return fmt.Errorf("max_batch must not be negative, got %d", c.MaxBatch)
	case c.Latency < 0:
		return fmt.Errorf("latency must not be negative, got %s", c.Latency)
	case c.LatencyJitter < 0:
		return fmt.Errorf("latency_jitter must not be negative, got %s", c.LatencyJitter)
	case c.RateLimit < 0:
		return fmt.Errorf("rate_limit must not be negative, got %v", c.RateLimit)
	}
	return nil
}

// NormalizeDomains trims, lower-cases and drops a leading "@" from each
// domain, dropping empty ones, so that "@Example.COM " matches "a@example.com".
func NormalizeDomains(domains []string) []string {
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// configPatch is the body of POST /admin/config: every field optional, so a
// test can change one knob without knowing the others.
type configPatch struct {
	FailRate            *float64  `json:"fail_rate"`
	CustomerFailRate    *float64  `json:"customer_fail_rate"`
	FailAfterCreateRate *float64  `json:"fail_after_create_rate"`
	LostReplyRate       *float64  `json:"lost_reply_rate"`
	MaxBatch            *int      `json:"max_batch"`
	Latency             *duration `json:"latency"`
	LatencyJitter       *duration `json:"latency_jitter"`
	RateLimit           *float64  `json:"rate_limit"`
	RejectDomains       *[]string `json:"reject_domains"`
	UniqueEmail         *bool     `json:"unique_email"`
	Token               *string   `json:"token"`
}

func (p configPatch) apply(c Config) Config {
	if p.FailRate != nil {
		c.FailRate = *p.FailRate
	}
	if p.CustomerFailRate != nil {
		c.CustomerFailRate = *p.CustomerFailRate
	}
	if p.FailAfterCreateRate != nil {
		c.FailAfterCreateRate = *p.FailAfterCreateRate
	}
	if p.LostReplyRate != nil {
		c.FailAfterCreateRate = *p.LostReplyRate
	}
	if p.MaxBatch != nil {
		c.MaxBatch = *p.MaxBatch
	}
	if p.Latency != nil {
		c.Latency = time.Duration(*p.Latency)
	}
	if p.LatencyJitter != nil {
		c.LatencyJitter = time.Duration(*p.LatencyJitter)
	}
	if p.RateLimit != nil {
		c.RateLimit = *p.RateLimit
	}
	if p.RejectDomains != nil {
		c.RejectDomains = *p.RejectDomains
	}
	if p.UniqueEmail != nil {
		c.UniqueEmail = *p.UniqueEmail
	}
	if p.Token != nil {
		c.Token = *p.Token
	}
	return c
}

// configView is how the admin API shows a Config: durations readable, the
// token never echoed.
type configView struct {
	FailRate            float64  `json:"fail_rate"`
	CustomerFailRate    float64  `json:"customer_fail_rate"`
	FailAfterCreateRate float64  `json:"lost_reply_rate"`
	MaxBatch            int      `json:"max_batch"`
	Latency             string   `json:"latency"`
	LatencyJitter       string   `json:"latency_jitter"`
	RateLimit           float64  `json:"rate_limit"`
	RejectDomains       []string `json:"reject_domains"`
	UniqueEmail         bool     `json:"unique_email"`
	TokenSet            bool     `json:"token_set"`
}

func viewOf(c Config) configView {
	return configView{
		FailRate:            c.FailRate,
		CustomerFailRate:    c.CustomerFailRate,
		FailAfterCreateRate: c.FailAfterCreateRate,
		MaxBatch:            c.maxBatch(),
		Latency:             c.Latency.String(),
		LatencyJitter:       c.LatencyJitter.String(),
		RateLimit:           c.RateLimit,
		RejectDomains:       append([]string{}, c.RejectDomains...),
		UniqueEmail:         c.UniqueEmail,
		TokenSet:            c.Token != "",
	}
}

// duration reads a JSON string such as "250ms"; a bare number would leave
// the unit to guesswork.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	if !bytes.HasPrefix(b, []byte(`"`)) {
		return errors.New(`duration must be a string such as "250ms"`)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (c Config) maxBatch() int {
	if c.MaxBatch <= 0 {
		return DefaultMaxBatch
	}
	return c.MaxBatch
}
