package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// importEvents is GET /api/v1/imports/{id}/events: server-sent events, a
// `progress` event with the import's counts every EventsEvery while it runs,
// then one `done` event when it is settled, after which the stream ends.
//
// Event ids count the events of the stream, across reconnections: a client
// that comes back with Last-Event-ID n (browsers do it by themselves) gets
// n+1 next, with the counts as they are now. Each event carries the whole
// state, so a client that missed some loses nothing but their times. A
// client that comes back after its done event gets the done event again.
func (s *server) importEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	seq, err := lastEventID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	imp, err := s.importWithSettled(ctx, id)
	if err != nil && !errors.Is(err, errBrokerDown) {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not buffer the stream
	w.WriteHeader(http.StatusOK)
	// The browser waits this long before reconnecting.
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", s.cfg.EventsEvery.Milliseconds()); err != nil {
		return
	}

	// Settled must be seen twice in a row: a consumer's batch taken from
	// the queue shows in Postgres only once it is inserted.
	settledBefore := false
	tick := time.NewTicker(s.cfg.EventsEvery)
	defer tick.Stop()
	for {
		done := imp.Settled && (settledBefore || imp.State == stateFailed)
		settledBefore = imp.Settled
		event := "progress"
		if done {
			event = "done"
		}
		seq++
		if err := writeEvent(w, seq, event, imp); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streams.Done():
			return
		case <-tick.C:
		}
		next, err := s.importWithSettled(ctx, id)
		switch {
		case err == nil:
			imp = next
		case errors.Is(err, errBrokerDown):
			// Counts from Postgres still move; settled waits for the broker.
			imp, imp.Settled = next, false
		case ctx.Err() != nil:
			return
		default:
			// Postgres is away: say so in the stream and keep trying.
			s.logger.Warn("events: could not read the import", "import_id", id, "error", err)
			seq++
			if err := writeEvent(w, seq, "error", map[string]string{"error": err.Error()}); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}
}

// lastEventID reads Last-Event-ID, or the last_event_id query parameter for
// clients that cannot set headers.
func lastEventID(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("Last-Event-ID %q: want the id of an event this stream sent", v)
	}
	return n, nil
}

func writeEvent(w http.ResponseWriter, id int64, event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	// event is one of this file's names, data JSON on one line: nothing a
	// client sent.
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, event, data) //nolint:gosec // text/event-stream, see above

	return err
}
