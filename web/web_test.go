package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/crm/crmmock"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/process"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

const testToken = "test-token-7f3a"

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// consumerBinary builds the consumer once per test run.
func consumerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "custimport-web-bin") //nolint:usetesting // shared by the run's tests; TestMain removes it
		if buildErr != nil {
			return
		}
		buildErr = process.Build(t.Context(), binDir, "./consumer")
	})
	require.NoError(t, buildErr)
	return filepath.Join(binDir, "consumer")
}

func TestMain(m *testing.M) {
	m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// testBundle is one isolated deployment: its own schema, queues, upload
// folder and CRM, and the web service on its own port.
type testBundle struct {
	db     pgstore.Config
	pool   *pgxpool.Pool
	top    rabbit.Topology
	env    map[string]string
	crmURL string
	addr   string // the web service's host:port, fixed across restarts
	base   string // http://addr
	stop   func() // stops the web service (SIGTERM-like) and waits
	logs   *testenv.Buffer
}

type setupOption func(env map[string]string)

func withEnv(k, v string) setupOption { return func(env map[string]string) { env[k] = v } }

func setup(t *testing.T, opts ...setupOption) *testBundle {
	t.Helper()
	db := testenv.MigratedPostgres(t)
	top := testenv.Topology(t)
	crm := httptest.NewServer(crmmock.New(crmmock.DefaultConfig(), slog.New(slog.DiscardHandler)))
	t.Cleanup(crm.Close)
	pool, err := pgxpool.New(t.Context(), testenv.DatabaseURLWithSchema(t, db))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b := &testBundle{
		db: db, pool: pool, top: top, crmURL: crm.URL, addr: freeAddr(t),
		env: map[string]string{
			"DATABASE_URL":       testenv.DatabaseURLWithSchema(t, db),
			"AMQP_URL":           testenv.AMQPURL(t),
			"WEB_API_TOKEN":      testToken,
			"WEB_UPLOAD_DIR":     t.TempDir(),
			"WEB_EVENTS_EVERY":   "200ms",
			"WEB_PROGRESS_EVERY": "100ms",
			"WEB_STALE_AFTER":    "2s",
			"WEB_NAME":           "web-test",
		},
	}
	b.base = "http://" + b.addr
	for _, kv := range top.Env() {
		k, v, _ := strings.Cut(kv, "=")
		b.env[k] = v
	}
	for _, o := range opts {
		o(b.env)
	}
	b.start(t)
	return b
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := process.FreeAddr(t.Context())
	require.NoError(t, err)
	return addr
}

var listening = regexp.MustCompile(`listening on http://(\S+)`)

// start runs the web service (run, as main does) until b.stop or the end
// of the test.
func (b *testBundle) start(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	logs := &testenv.Buffer{}
	b.logs = logs
	done := make(chan error, 1)
	args = append([]string{"--addr", b.addr}, args...)
	go func() { done <- run(ctx, args, func(k string) string { return b.env[k] }, io.Discard, logs) }()
	var stopOnce sync.Once
	b.stop = func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "web stopped with an error")
			case <-time.After(60 * time.Second):
				t.Error("web did not stop within 60s")
			}
		})
	}
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("--- web logs:\n%s", tail(logs.String(), 6000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !listening.MatchString(logs.String()) {
		select {
		case err := <-done:
			done <- err // for stop
			t.Fatalf("web ended at start: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("web did not start listening within 60s:\n%s", logs.String())
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// consumer starts a real consumer against the bundle's schema, queues and
// CRM; it is stopped with SIGTERM when the test ends.
func (b *testBundle) consumer(t *testing.T) {
	t.Helper()
	out := &testenv.Buffer{}
	p, err := process.Start(context.WithoutCancel(t.Context()), process.Spec{
		Name: "consumer", Bin: consumerBinary(t), Output: out,
		Env: append(b.top.Env(),
			"DATABASE_URL="+b.env["DATABASE_URL"], "AMQP_URL="+b.env["AMQP_URL"], "CRM_URL="+b.crmURL,
			"CONSUMER_HTTP_ADDR=off", "CONSUMER_NAME="+t.Name(), "LOG_FORMAT=json"),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("consumer: %v", err)
		}
		if t.Failed() {
			t.Logf("--- consumer output:\n%s", tail(out.String(), 4000))
		}
	})
}

// reply is an answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the token given ("" sends none) and reads the
// answer.
func (b *testBundle) do(t *testing.T, method, path, token, contentType string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.base+path, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: got}
}

// getJSON GETs path with the token, wants 200 and decodes into v.
func (b *testBundle) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	r := b.do(t, http.MethodGet, path, testToken, "", http.NoBody)
	require.Equal(t, http.StatusOK, r.status, "GET %s: %s", path, r.body)
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

// upload posts a file as text/csv and wants 202; it returns the import id.
func (b *testBundle) upload(t *testing.T, file, query string) string {
	t.Helper()
	f, err := os.Open(file) //nolint:gosec // a test fixture
	require.NoError(t, err)
	defer f.Close()
	r := b.do(t, http.MethodPost, "/api/v1/imports?name="+filepath.Base(file)+query, testToken, "text/csv", f)
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))
	var got map[string]string
	require.NoError(t, json.Unmarshal(r.body, &got))
	require.Equal(t, "/api/v1/imports/"+got["id"], got["url"])
	return got["id"]
}

// sseEvent is one server-sent event.
type sseEvent struct {
	ID, Event string
	Import    importRow
}

// events opens an import's event stream (with Last-Event-ID when lastID is
// set) and returns a channel of its events, closed when the stream ends.
func (b *testBundle) events(ctx context.Context, t *testing.T, id, lastID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/api/v1/imports/"+id+"/events", http.NoBody)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reading goroutine closes it
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	ch := make(chan sseEvent)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var ev sseEvent
		var data string
		for sc.Scan() {
			line := sc.Text()
			field, value, _ := strings.Cut(line, ": ")
			switch {
			case line == "" && data != "":
				if json.Unmarshal([]byte(data), &ev.Import) != nil {
					return
				}
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev, data = sseEvent{}, ""
			case field == "id":
				ev.ID = value
			case field == "event":
				ev.Event = value
			case field == "data":
				data = value
			}
		}
	}()
	return ch
}

// waitDone reads events until the done event and returns them all.
func waitDone(t *testing.T, ch <-chan sseEvent, within time.Duration) []sseEvent {
	t.Helper()
	var got []sseEvent
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended without a done event; got %d events, last %+v", len(got), last(got))
			}
			got = append(got, ev)
			if ev.Event == "done" {
				return got
			}
		case <-timeout:
			t.Fatalf("no done event within %s; got %d events, last %+v", within, len(got), last(got))
		}
	}
}

func last(evs []sseEvent) sseEvent {
	if len(evs) == 0 {
		return sseEvent{}
	}
	return evs[len(evs)-1]
}

// countsInPostgres counts an import's customers straight from the table.
func (b *testBundle) countsInPostgres(t *testing.T, id string) customerCounts {
	t.Helper()
	var c customerCounts
	require.NoError(t, b.pool.QueryRow(t.Context(), `
SELECT count(*), count(*) FILTER (WHERE crm_state = 'pending'), count(*) FILTER (WHERE crm_state = 'synced'),
       count(*) FILTER (WHERE crm_state = 'pending' AND crm_last_error IS NOT NULL),
       count(*) FILTER (WHERE crm_state = 'rejected'), count(*) FILTER (WHERE crm_state = 'failed')
FROM customers WHERE import_id = $1`, id).Scan(&c.Stored, &c.Pending, &c.Synced, &c.Retrying, &c.Rejected, &c.Failed))
	return c
}

// seed returns a sample export of shared/data/seeds.
func seed(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(testenv.SeedsDir(t), name)
}

// deadLetters puts messages with the given reasons in the dead-letter queue,
// as the consumers do: message i (ids sample:1, sample:2...) is customer
// dead<i>@example.org, but for invalid_message, which is no JSON.
func deadLetters(t *testing.T, b *testBundle, reasons ...string) {
	t.Helper()
	_, pub := testenv.Publisher(t, b.top)
	msgs := make([]rabbit.Message, len(reasons))
	for i, r := range reasons {
		body := fmt.Appendf(nil, `{"email":"dead%d@example.org"}`, i)
		if r == "invalid_message" {
			body = []byte("not json")
		}
		msgs[i] = rabbit.Message{Exchange: b.top.DeadExchange(), Key: rabbit.DeadKey, Publishing: amqp.Publishing{
			MessageId: fmt.Sprintf("sample:%d", i+1), Body: body, DeliveryMode: amqp.Persistent, ContentType: "application/json",
			Headers: amqp.Table{
				"x-death-reason": r, "x-attempts": int32(1), "x-source": "sample.csv", "x-row": int64(i + 1),
				"x-last-error": map[string]string{
					"crm_rejected": "CRM answered 422: email domain not accepted", "crm_attempts_exhausted": "CRM answered 503",
					"invalid_message": "body is not a customer JSON object",
				}[r],
			},
		}}
	}
	require.NoError(t, pub.PublishAll(t.Context(), msgs))
}
