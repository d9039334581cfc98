package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

func TestUploadGoesToDoneAndCountsEqualPostgres(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.consumer(t)

	id := b.upload(t, seed(t, "mock_data_1000_header.csv"), "")
	evs := waitDone(t, b.events(t.Context(), t, id, ""), 3*time.Minute)

	for i, ev := range evs {
		require.Equal(t, strconv.Itoa(i+1), ev.ID, "event ids count the events")
	}
	final := last(evs).Import
	require.Equal(t, stateDone, final.State)
	require.True(t, final.Settled)
	require.InDelta(t, 100.0, final.Percent, 0)
	require.Equal(t, int64(1002), final.Rows)
	require.Equal(t, int64(1002), final.Published)
	require.Equal(t, int64(0), final.Rejected)
	require.Equal(t, customerCounts{Stored: 1002, Synced: 1002}, final.Customers)
	require.Equal(t, b.countsInPostgres(t, id), final.Customers, "the API's counts are Postgres's")

	var got importRow
	b.getJSON(t, "/api/v1/imports/"+id, &got)
	require.Equal(t, final.Customers, got.Customers)
	require.Equal(t, "mock_data_1000_header.csv", got.FileName)
	require.NotNil(t, got.FinishedAt)

	var list struct{ Imports []importRow }
	b.getJSON(t, "/api/v1/imports", &list)
	require.Len(t, list.Imports, 1)
	require.Equal(t, id, list.Imports[0].ID)

	// Every customer names the import that first stored it.
	var c customerRow
	b.getJSON(t, "/api/v1/customers/"+url.PathEscape("HMahedy0@diigo.com"), &c)
	require.Equal(t, id, c.ImportID)
	require.Equal(t, pgstore.StateSynced, c.State)
	require.Equal(t, "Hadleigh Mahedy", c.Name)

	// Its rejects report: the header line only.
	r := b.do(t, http.MethodGet, "/api/v1/imports/"+id+"/rejects", testToken, "", http.NoBody)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/csv; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "reason,row,id,first_name,last_name,email,phone\n", string(r.body))
}

func TestMultipartUploadWithColumnsAndRejects(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	require.NoError(t, mw.WriteField("header", "no"))
	fw, err := mw.CreateFormFile("file", "people.csv")
	require.NoError(t, err)
	_, err = io.WriteString(fw, "Ann,ann@example.com\nBob,not-an-email\nCid,cid@example.com\n")
	require.NoError(t, err)
	// A field after the file counts too.
	require.NoError(t, mw.WriteField("columns", "name,email"))
	require.NoError(t, mw.Close())
	r := b.do(t, http.MethodPost, "/api/v1/imports", testToken, mw.FormDataContentType(), &buf)
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))
	var created map[string]string
	require.NoError(t, json.Unmarshal(r.body, &created))
	id := created["id"]

	var imp importRow
	require.Eventually(t, func() bool {
		b.getJSON(t, "/api/v1/imports/"+id, &imp)
		return imp.State == stateDone
	}, time.Minute, 50*time.Millisecond)
	require.Equal(t, "people.csv", imp.FileName)
	require.Equal(t, importOptions{Header: "no", Columns: []string{"name", "email"}}, imp.Options)
	require.Equal(t, int64(3), imp.Rows)
	require.Equal(t, int64(2), imp.Published)
	require.Equal(t, int64(1), imp.Rejected)
	require.False(t, imp.Settled, "no consumer runs: its messages wait in the queue")

	r = b.do(t, http.MethodGet, "/api/v1/imports/"+id+"/rejects", testToken, "", http.NoBody)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.header.Get("Content-Disposition"), `filename="people.rejects.csv"`)
	require.Contains(t, string(r.body), "reason,row,name,email\n")
	require.Contains(t, string(r.body), ",2,Bob,not-an-email\n")

	// The published messages carry the import's id.
	conn, err := rabbit.Dial(t.Context(), testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	d, ok, err := ch.Get(b.top.Queue(), false)
	require.NoError(t, err)
	require.True(t, ok)
	c, err := customer.Decode(d.Body)
	require.NoError(t, err)
	require.Equal(t, id, c.ImportID)
	require.Equal(t, "people.csv", c.Source[:len("people.csv")])
}

func TestBadRequestsGetAClear4xx(t *testing.T) {
	t.Parallel()
	b := setup(t, withEnv("WEB_MAX_UPLOAD", "4KiB"))
	csv := "email,name\na@example.com,A\n"
	zip := "PK\x03\x04\x14\x00\x00\x00\x08\x00" + strings.Repeat("\x00\x01\x02", 30)
	big := "email\n" + strings.Repeat("someone@example.com\n", 300)

	for _, tc := range []struct {
		name, method, path, token, contentType string
		body                                   io.Reader
		status                                 int
		says                                   string
	}{
		{"no token", "POST", "/api/v1/imports", "", "text/csv", strings.NewReader(csv), 401, "missing API token"},
		{"wrong token", "POST", "/api/v1/imports", "nope", "text/csv", strings.NewReader(csv), 401, "wrong API token"},
		{"no token on a read", "GET", "/api/v1/imports", "", "", http.NoBody, 401, "missing API token"},
		{"no token on events", "GET", "/api/v1/imports/x/events", "", "", http.NoBody, 401, "missing API token"},
		{"wrong token on replay", "POST", "/api/v1/dead-letters/replay", "nope", "", http.NoBody, 401, "wrong API token"},
		{"binary content", "POST", "/api/v1/imports", testToken, "text/csv", strings.NewReader(zip), 415, "not a CSV file: its content is binary (application/zip)"},
		{"not a CSV content type", "POST", "/api/v1/imports", testToken, "application/json", strings.NewReader(`{}`), 415, "Content-Type: text/csv"},
		{"empty", "POST", "/api/v1/imports", testToken, "text/csv", http.NoBody, 400, "the upload is empty"},
		{"over the size limit", "POST", "/api/v1/imports", testToken, "text/csv", strings.NewReader(big), 413, "at most 4096"},
		{"over the size limit, chunked", "POST", "/api/v1/imports", testToken, "text/csv", io.MultiReader(strings.NewReader(big)), 413, "over 4096 bytes"},
		{"no email column", "POST", "/api/v1/imports", testToken, "text/csv", strings.NewReader("id,name\n1,Ann\n2,Bob\n"), 422, "no email column"},
		{"bad header option", "POST", "/api/v1/imports?header=maybe", testToken, "text/csv", strings.NewReader(csv), 400, `header="maybe"`},
		{"bad delimiter option", "POST", "/api/v1/imports?delimiter=x", testToken, "text/csv", strings.NewReader(csv), 400, `delimiter="x"`},
		{"multipart without a file", "POST", "/api/v1/imports", testToken, "multipart/form-data; boundary=X", strings.NewReader("--X\r\nContent-Disposition: form-data; name=\"header\"\r\n\r\nyes\r\n--X--\r\n"), 400, "no file field"},
		{"unknown import", "GET", "/api/v1/imports/nope", testToken, "", http.NoBody, 404, `import "nope": not found`},
		{"events of an unknown import", "GET", "/api/v1/imports/nope/events", testToken, "", http.NoBody, 404, "not found"},
		{"rejects of an unknown import", "GET", "/api/v1/imports/nope/rejects", testToken, "", http.NoBody, 404, "not found"},
		{"unknown customer", "GET", "/api/v1/customers/nobody@example.com", testToken, "", http.NoBody, 404, "not found"},
		{"bad state filter", "GET", "/api/v1/customers?state=lost", testToken, "", http.NoBody, 400, `state="lost"`},
		{"bad cursor", "GET", "/api/v1/customers?cursor=%25%25", testToken, "", http.NoBody, 400, "cursor"},
		{"bad limit", "GET", "/api/v1/customers?limit=0", testToken, "", http.NoBody, 400, "limit"},
		{"bad replay limit", "POST", "/api/v1/dead-letters/replay", testToken, "application/json", strings.NewReader(`{"limit":-1}`), 400, "limit"},
		{"bad event id", "GET", "/api/v1/imports/x/events?last_event_id=abc", testToken, "", http.NoBody, 400, "Last-Event-ID"},
		{"unknown endpoint", "GET", "/api/v1/nothing", testToken, "", http.NoBody, 404, "no such API endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, tc.method, tc.path, tc.token, tc.contentType, tc.body)
			require.Equal(t, tc.status, r.status, string(r.body))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal(r.body, &e), string(r.body))
			require.Contains(t, e.Error, tc.says)
		})
	}

	// The 422 is the producer's own message, and the upload shows as a
	// failed import.
	var list struct{ Imports []importRow }
	b.getJSON(t, "/api/v1/imports", &list)
	var failed []string
	for _, imp := range list.Imports {
		require.Equal(t, stateFailed, imp.State, imp.ID)
		failed = append(failed, imp.Error)
	}
	require.Contains(t, strings.Join(failed, "\n"), "no email column")

	// /healthz needs no token.
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/healthz", "", "", http.NoBody).status)
}

func TestCustomersSearchFilterAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	st, err := pgstore.Open(t.Context(), b.db)
	require.NoError(t, err)
	defer st.Close()
	var batch []customer.Customer
	for i := range 25 {
		batch = append(batch, customer.Customer{Email: fmt.Sprintf("ann%02d@example.com", i), Name: fmt.Sprintf("Zed %02d", i), ImportID: "imp-a"})
	}
	batch = append(batch,
		customer.Customer{Email: "bob@example.com", Name: "Annabel Bob", ImportID: "imp-b"},
		customer.Customer{Email: "cid@example.com", Name: "Cid", ImportID: "imp-b"},
	)
	_, err = st.InsertNew(t.Context(), batch)
	require.NoError(t, err)
	_, err = b.pool.Exec(t.Context(), `UPDATE customers SET crm_state = 'failed' WHERE email IN ('ann03@example.com', 'cid@example.com')`)
	require.NoError(t, err)

	search := func(query string) []string {
		t.Helper()
		var all []string
		cursor := ""
		for range 20 {
			var page customerPage
			b.getJSON(t, "/api/v1/customers?limit=7&"+query+"&cursor="+cursor, &page)
			for _, c := range page.Customers {
				all = append(all, c.Email)
			}
			if page.NextCursor == "" {
				return all
			}
			cursor = page.NextCursor
		}
		t.Fatal("more than 20 pages")
		return nil
	}
	all := search("")
	require.Len(t, all, 27, "every page once, nothing twice")
	require.IsIncreasing(t, all)
	require.Len(t, search("q=ANN"), 26, "email prefix (25) or name prefix (Annabel), case-insensitive")
	require.Equal(t, []string{"ann10@example.com", "ann11@example.com"}, search("q=ann1")[:2])
	require.Equal(t, []string{"ann03@example.com", "ann04@example.com"}, search("q=zed+0")[3:5], "name prefix")
	require.Equal(t, []string{"ann03@example.com", "cid@example.com"}, search("state=failed"))
	require.Equal(t, []string{"bob@example.com", "cid@example.com"}, search("import=imp-b"))
	require.Equal(t, []string{"cid@example.com"}, search("import=imp-b&state=failed"))
	require.Empty(t, search("q=nobody"))
}

func TestDeadLettersListedInPlaceAndReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	st, err := pgstore.Open(t.Context(), b.db)
	require.NoError(t, err)
	defer st.Close()
	var cs []customer.Customer
	for i := range 4 {
		cs = append(cs, customer.Customer{Email: fmt.Sprintf("dead%d@example.org", i)})
	}
	_, err = st.InsertNew(t.Context(), cs)
	require.NoError(t, err)
	_, err = b.pool.Exec(t.Context(), `UPDATE customers SET crm_state = 'failed', crm_attempts = 5`)
	require.NoError(t, err)
	deadLetters(t, b, "crm_attempts_exhausted", "invalid_message", "crm_attempts_exhausted", "crm_attempts_exhausted")

	var rep struct {
		Total    int            `json:"total"`
		ByReason map[string]int `json:"by_reason"`
		First    []struct {
			MessageID string         `json:"message_id"`
			Reason    string         `json:"reason"`
			Headers   map[string]any `json:"headers"`
		} `json:"first"`
	}
	b.getJSON(t, "/api/v1/dead-letters?reason=crm_attempts_exhausted&limit=2", &rep)
	require.Equal(t, 4, rep.Total)
	require.Equal(t, map[string]int{"crm_attempts_exhausted": 3, "invalid_message": 1}, rep.ByReason)
	require.Len(t, rep.First, 2)
	require.Equal(t, "sample:1", rep.First[0].MessageID)
	require.Equal(t, "CRM answered 503", rep.First[0].Headers["x-last-error"])
	b.getJSON(t, "/api/v1/dead-letters", &rep)
	require.Equal(t, 4, rep.Total, "reading leaves them in place")

	r := b.do(t, http.MethodPost, "/api/v1/dead-letters/replay", testToken, "application/json",
		strings.NewReader(`{"reason":"crm_attempts_exhausted","limit":2}`))
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var res struct {
		Replayed int `json:"replayed"`
		Left     int `json:"left"`
	}
	require.NoError(t, json.Unmarshal(r.body, &res))
	require.Equal(t, 2, res.Replayed)
	require.Equal(t, 2, res.Left)

	counts, err := st.Counts(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(2), counts[pgstore.StatePending], "the replayed customers are pending again")

	// The rest with a form post, as the page's button sends it.
	r = b.do(t, http.MethodPost, "/api/v1/dead-letters/replay", testToken, "application/x-www-form-urlencoded",
		strings.NewReader("reason=crm_attempts_exhausted"))
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	rep.ByReason = nil
	b.getJSON(t, "/api/v1/dead-letters", &rep)
	require.Equal(t, map[string]int{"invalid_message": 1}, rep.ByReason)
}

func TestEventsResumeAfterAReconnectMidImport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// No consumer yet: the import publishes, then waits for its customers.
	id := b.upload(t, seed(t, "mock_data_1000_header.csv"), "")

	ctx, cancel := context.WithCancel(t.Context())
	first := b.events(ctx, t, id, "")
	var seen []sseEvent
	for len(seen) < 3 {
		ev, ok := <-first
		require.True(t, ok, "the stream ended early")
		seen = append(seen, ev)
	}
	require.Equal(t, "progress", last(seen).Event)
	require.False(t, last(seen).Import.Settled)
	cancel() // the connection is lost

	b.consumer(t)
	evs := waitDone(t, b.events(t.Context(), t, id, last(seen).ID), 3*time.Minute)
	lastID, err := strconv.Atoi(last(seen).ID)
	require.NoError(t, err)
	for i, ev := range evs {
		require.Equal(t, strconv.Itoa(lastID+1+i), ev.ID, "ids go on from Last-Event-ID")
	}
	var prev int64
	for _, ev := range evs {
		assert.GreaterOrEqual(t, ev.Import.Customers.Synced, prev, "counts never go back")
		prev = ev.Import.Customers.Synced
	}
	require.Equal(t, customerCounts{Stored: 1002, Synced: 1002}, last(evs).Import.Customers)
	require.Equal(t, b.countsInPostgres(t, id), last(evs).Import.Customers)

	// Coming back after the done event gets it again, at once.
	again := waitDone(t, b.events(t.Context(), t, id, last(evs).ID), time.Minute)
	require.Equal(t, customerCounts{Stored: 1002, Synced: 1002}, last(again).Import.Customers)
}

func TestPagesNeedASession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	type answer struct {
		status   int
		location string
		cookies  []*http.Cookie
	}
	send := func(req *http.Request) answer {
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return answer{resp.StatusCode, resp.Header.Get("Location"), resp.Cookies()}
	}
	get := func(path string, cookie *http.Cookie) answer {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.base+path, http.NoBody)
		require.NoError(t, err)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		return send(req)
	}
	post := func(token string) answer {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.base+"/login",
			strings.NewReader(url.Values{"token": {token}, "next": {"/customers"}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return send(req)
	}

	a := get("/customers?q=a", nil)
	require.Equal(t, http.StatusSeeOther, a.status)
	require.Equal(t, "/login?next=%2Fcustomers%3Fq%3Da", a.location)

	require.Equal(t, http.StatusUnauthorized, post("wrong").status)
	a = post(testToken)
	require.Equal(t, http.StatusSeeOther, a.status)
	require.Equal(t, "/customers", a.location)
	var session *http.Cookie
	for _, c := range a.cookies {
		if c.Name == sessionCookie {
			session = c
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.NotContains(t, session.Value, testToken)

	for _, path := range []string{"/", "/customers", "/dead-letters", "/api/v1/imports"} {
		require.Equal(t, http.StatusOK, get(path, session).status, path)
	}
	forged := &http.Cookie{Name: sessionCookie, Value: "forged", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	require.Equal(t, http.StatusSeeOther, get("/", forged).status)
}

func TestWithoutATokenItListensOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, withEnv("WEB_API_TOKEN", ""))
	b.stop()
	port := b.addr[strings.LastIndex(b.addr, ":")+1:]
	b.start(t, "--addr", "0.0.0.0:"+port)
	require.Contains(t, b.logs.String(), "listening on loopback only")
	require.Contains(t, b.logs.String(), "listening on http://127.0.0.1:"+port)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/api/v1/imports", "", "", http.NoBody).status)
}

func TestHelpShowsEveryFlagWithItsVariable(t *testing.T) {
	t.Parallel()
	var out testenv.Buffer
	err := run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, want := range []string{"--addr", "WEB_ADDR", "127.0.0.1:8080", "WEB_API_TOKEN", "WEB_UPLOAD_DIR", "WEB_MAX_UPLOAD", "10GiB", "AMQP_URL", "DATABASE_URL"} {
		require.Contains(t, out.String(), want)
	}
	out = testenv.Buffer{}
	err = run(t.Context(), []string{"watch", "--help"}, func(string) string { return "" }, &out, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out.String(), "WEB_URL")

	err = run(t.Context(), []string{"--max-upload", "lots"}, func(string) string { return "" }, &out, &out)
	require.ErrorContains(t, err, `--max-upload "lots"`)
	err = run(t.Context(), nil, func(k string) string { return map[string]string{"WEB_EVENTS_EVERY": "0s"}[k] }, &out, &out)
	require.ErrorContains(t, err, "--events-every")
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"10GiB": 10 << 30, "500MiB": 500 << 20, "4KiB": 4096, "1048576": 1 << 20, "2GB": 2e9, "7kb": 7000, "12 MB": 12e6, "100B": 100,
	} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "lots", "-1", "1.5GiB", "99999999999TiB"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}
