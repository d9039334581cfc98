package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/custimport/custimport/libs/deadletter"
	"github.com/custimport/custimport/libs/pgstore"
)

// customerPage is a page of a customer search.
type customerPage struct {
	Customers  []customerRow `json:"customers"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// customerQueryFrom reads q, state, import, cursor and limit.
func customerQueryFrom(r *http.Request) (customerQuery, error) {
	qs := r.URL.Query()
	q := customerQuery{Q: qs.Get("q"), State: qs.Get("state"), Import: qs.Get("import")}
	switch pgstore.State(q.State) {
	case "", pgstore.StatePending, pgstore.StateSynced, pgstore.StateRejected, pgstore.StateFailed:
	default:
		return q, fmt.Errorf("state=%q: want pending, synced, rejected or failed", q.State)
	}
	if len(q.Q) > 254 {
		return q, errors.New("q: at most 254 characters")
	}
	if c := qs.Get("cursor"); c != "" {
		after, err := decodeCursor(c)
		if err != nil {
			return q, err
		}
		q.After = after
	}
	limit, err := intParam(r, "limit", 50, 500)
	if err != nil {
		return q, err
	}
	q.Limit = limit
	return q, nil
}

func (s *server) searchCustomers(r *http.Request) (customerPage, error) {
	q, err := customerQueryFrom(r)
	if err != nil {
		return customerPage{}, &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	rows, more, err := s.store.searchCustomers(r.Context(), q)
	if err != nil {
		return customerPage{}, err
	}
	page := customerPage{Customers: rows}
	if more {
		page.NextCursor = encodeCursor(rows[len(rows)-1].Email)
	}
	return page, nil
}

func (s *server) listCustomers(w http.ResponseWriter, r *http.Request) {
	page, err := s.searchCustomers(r)
	answer(s, w, r, page, err)
}

func (s *server) getCustomer(w http.ResponseWriter, r *http.Request) {
	c, err := s.store.getCustomer(r.Context(), r.PathValue("email"))
	answer(s, w, r, c, err)
}

func (s *server) inspectDeadLetters(r *http.Request) (deadletter.Report, error) {
	sample, err := intParam(r, "limit", 20, 500)
	if err != nil {
		return deadletter.Report{}, &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return s.broker.inspect(r.Context(), deadletter.InspectOptions{
		Reason: r.URL.Query().Get("reason"), Scan: s.cfg.DeadLetterScan, Sample: sample,
	})
}

// listDeadLetters is GET /api/v1/dead-letters?reason=&limit=: counts by
// reason and the first messages with their headers, left in place.
func (s *server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	rep, err := s.inspectDeadLetters(r)
	answer(s, w, r, rep, err)
}

// replayDeadLetters is POST /api/v1/dead-letters/replay with reason and
// limit as JSON, form or query fields: what `consumer replay` does.
func (s *server) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	opts, err := replayOptionsFrom(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.broker.replay(r.Context(), s.pgstore, opts)
	if err == nil {
		s.logger.Info("dead letters replayed", "reason", opts.Reason, "limit", opts.Limit, "replayed", res.Replayed, "left", res.Left)
	}
	answer(s, w, r, res, err)
}

func replayOptionsFrom(w http.ResponseWriter, r *http.Request) (deadletter.ReplayOptions, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	fields := map[string]string{}
	for k, v := range r.URL.Query() {
		fields[k] = v[0]
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		var body struct {
			Reason string `json:"reason"`
			Limit  *int   `json:"limit"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return deadletter.ReplayOptions{}, fmt.Errorf("the body is not a JSON object with reason and limit: %w", err)
		}
		if body.Reason != "" {
			fields["reason"] = body.Reason
		}
		if body.Limit != nil {
			fields["limit"] = strconv.Itoa(*body.Limit)
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := r.ParseMultipartForm(64 << 10); err != nil && !errors.Is(err, http.ErrNotMultipart) { //nolint:gosec // the body is bounded above (MaxBytesReader)
			return deadletter.ReplayOptions{}, fmt.Errorf("read the form: %w", err)
		}
		for _, k := range []string{"reason", "limit"} {
			if v := r.PostFormValue(k); v != "" {
				fields[k] = v
			}
		}
	}
	opts := deadletter.ReplayOptions{Reason: strings.TrimSpace(fields["reason"])}
	if v := fields["limit"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return opts, fmt.Errorf("limit=%q: want a whole number, 0 for all", v)
		}
		opts.Limit = n
	}
	return opts, nil
}
