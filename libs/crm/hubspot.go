package crm

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HubSpot is the adapter of HubSpot's contacts API: customers are upserted in
// batches by email (POST /crm/v3/objects/contacts/batch/upsert with
// idProperty "email"), which makes sending the same customer again harmless
// without an idempotency key. Config.BaseURL is the API root
// (https://api.hubapi.com), Config.Token the private app's token. It is safe
// for concurrent use.
type HubSpot struct {
	poster
	upsert string
	max    int
}

// HubSpotMaxBatch is the most contacts HubSpot takes in one batch request.
const HubSpotMaxBatch = 100

// NewHubSpot returns the HubSpot adapter for cfg; hc as for New.
func NewHubSpot(cfg Config, hc *http.Client) (*HubSpot, error) {
	p, err := newPoster(cfg, hc)
	if err != nil {
		return nil, err
	}
	return &HubSpot{poster: p, upsert: p.url("/crm/v3/objects/contacts/batch/upsert"), max: min(p.cfg.MaxBatch, HubSpotMaxBatch)}, nil
}

type hubspotInput struct {
	ID         string            `json:"id"`
	IDProperty string            `json:"idProperty"`
	Properties map[string]string `json:"properties"`
}

type hubspotRecord struct {
	ID         string            `json:"id"`
	New        bool              `json:"new"`
	Properties map[string]string `json:"properties"`
}

type hubspotError struct {
	Status   string              `json:"status"`
	Category string              `json:"category"`
	Message  string              `json:"message"`
	Context  map[string][]string `json:"context"`
}

// Create implements CRM: the customers are upserted by email, at most 100 per
// request. A batch HubSpot refuses as a whole with 400 (one invalid contact
// fails all of them) is split in halves and sent again, so that only the
// invalid contact is rejected.
func (h *HubSpot) Create(ctx context.Context, reqs []Request) ([]Answer, error) {
	return sendChunks(ctx, reqs, h.max, h.send)
}

func (h *HubSpot) send(ctx context.Context, reqs []Request) ([]Answer, error) {
	const op = "upsert contacts"
	body := struct {
		Inputs []hubspotInput `json:"inputs"`
	}{Inputs: make([]hubspotInput, len(reqs))}
	for i, r := range reqs {
		body.Inputs[i] = hubspotInput{ID: r.Customer.Email, IDProperty: "email", Properties: hubspotProperties(r.Customer)}
	}
	resp, done, err := h.post(ctx, op, h.upsert, body, "") //nolint:bodyclose // done drains and closes it
	if err != nil {
		return nil, err
	}
	defer done()
	h.honourRateHeaders(ctx, resp.Header)

	switch {
	case (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge) && len(reqs) > 1:
		return sendChunks(ctx, reqs, (len(reqs)+1)/2, h.send)
	case resp.StatusCode == http.StatusTooManyRequests:
		err := h.statusError(ctx, op, resp)
		if se, ok := errors.AsType[*StatusError](err); ok && se.RetryAfter == 0 {
			// HubSpot names the window it counts in rather than a Retry-After.
			se.RetryAfter = hubspotWindow(resp.Header)
			slowDown(ctx, h.cfg.Limiter, se.Status, se.RetryAfter)
		}
		return nil, err
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusMultiStatus:
		return nil, h.statusError(ctx, op, resp)
	}

	var reply struct {
		Results []hubspotRecord `json:"results"`
		Errors  []hubspotError  `json:"errors"`
	}
	if err := h.readReply(ctx, op, resp, &reply); err != nil {
		return nil, err
	}
	return hubspotAnswers(reqs, reply.Results, reply.Errors), nil
}

// hubspotAnswers matches HubSpot's results (in no promised order) to the
// requests by email, and its errors by the ids they name. A contact with
// neither gets the error no contact was named in, or a transient error.
func hubspotAnswers(reqs []Request, results []hubspotRecord, errs []hubspotError) []Answer {
	byEmail := make(map[string]Answer, len(results)+len(errs))
	for _, r := range results {
		status := http.StatusOK
		if r.New {
			status = http.StatusCreated
		}
		byEmail[strings.ToLower(r.Properties["email"])] = Answer{Result: Result{ID: r.ID, Status: status, Existed: !r.New}}
	}
	var unnamed error
	for _, e := range errs {
		se := &StatusError{Status: hubspotStatus(e.Category), Body: truncateBody([]byte(e.Category + ": " + e.Message))}
		ids := slices.Concat(e.Context["ids"], e.Context["id"])
		if len(ids) == 0 && unnamed == nil {
			unnamed = se
		}
		for _, id := range ids {
			byEmail[strings.ToLower(id)] = Answer{Err: se}
		}
	}
	if unnamed == nil {
		unnamed = &StatusError{Status: http.StatusBadGateway, Body: "HubSpot's answer has no result for this contact"}
	}
	answers := make([]Answer, len(reqs))
	for i, r := range reqs {
		a, ok := byEmail[strings.ToLower(r.Customer.Email)]
		if !ok {
			a = Answer{Err: unnamed}
		}
		answers[i] = a
	}
	return answers
}

// hubspotStatus gives an error category of a batch answer the HTTP status it
// stands for: validation and missing objects are permanent, a rate limit
// asks to slow down, anything else is worth another try.
func hubspotStatus(category string) int {
	switch {
	case category == "RATE_LIMITS":
		return http.StatusTooManyRequests
	case category == "VALIDATION_ERROR", strings.Contains(category, "INVALID"):
		return http.StatusBadRequest
	case strings.Contains(category, "NOT_FOUND"):
		return http.StatusNotFound
	case category == "CONFLICT":
		return http.StatusConflict
	default:
		return http.StatusBadGateway
	}
}

// hubspotProperties maps a customer to contact properties. Empty values are
// left out: HubSpot clears a property sent empty.
func hubspotProperties(c Customer) map[string]string {
	first, last := c.FirstName, c.LastName
	if first == "" && last == "" && c.Name != "" {
		first, last, _ = strings.Cut(strings.TrimSpace(c.Name), " ")
		last = strings.TrimSpace(last)
	}
	props := map[string]string{"email": c.Email}
	for k, v := range map[string]string{"firstname": first, "lastname": last, "phone": c.Phone} {
		if v != "" {
			props[k] = v
		}
	}
	return props
}

// honourRateHeaders slows every caller down when HubSpot says the window is
// used up (X-HubSpot-RateLimit-Remaining: 0): by one request's share of the
// window, so the next request is not a certain 429.
func (h *HubSpot) honourRateHeaders(ctx context.Context, hdr http.Header) {
	if h.cfg.Limiter == nil || hdr.Get("X-HubSpot-RateLimit-Remaining") != "0" {
		return
	}
	window := hubspotWindow(hdr)
	if most, err := strconv.Atoi(hdr.Get("X-HubSpot-RateLimit-Max")); err == nil && most > 0 {
		window /= time.Duration(most)
	}
	h.cfg.Limiter.Slow(ctx, window)
}

// hubspotWindow is the window HubSpot counts requests in
// (X-HubSpot-RateLimit-Interval-Milliseconds), one second when not said.
func hubspotWindow(hdr http.Header) time.Duration {
	ms, err := strconv.ParseInt(hdr.Get("X-HubSpot-RateLimit-Interval-Milliseconds"), 10, 64)
	if err != nil || ms <= 0 {
		return DefaultSlowDown
	}
	return min(time.Duration(ms)*time.Millisecond, time.Minute)
}
