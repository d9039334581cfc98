package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/importer"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/tcpproxy"
	"github.com/custimport/custimport/libs/testenv"
)

type testBundle struct {
	top  rabbit.Topology
	env  map[string]string
	dir  string
	conn *amqp.Connection
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	top := testenv.Topology(t)
	conn, err := rabbit.Dial(t.Context(), testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	dir := t.TempDir()
	return &testBundle{
		top: top, conn: conn, dir: dir,
		env: map[string]string{
			"AMQP_URL":           testenv.AMQPURL(t),
			"QUEUE_PREFIX":       top.Prefix,
			"RETRY_DELAYS":       "50ms,200ms",
			"PRODUCER_STATE_DIR": dir,
		},
	}
}

// run runs the producer and returns its summary and logs.
func (b *testBundle) run(ctx context.Context, t *testing.T, args ...string) (importer.Summary, string, error) {
	t.Helper()
	var stdout, stderr testenv.Buffer
	err := run(ctx, args, func(k string) string { return b.env[k] }, &stdout, &stderr)
	var s importer.Summary
	if out := stdout.String(); out != "" {
		require.NoError(t, json.Unmarshal([]byte(out), &s), out)
	}
	return s, stderr.String(), err
}

// drain takes every message off the work queue.
func (b *testBundle) drain(t *testing.T) []amqp.Delivery {
	t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(b.top.Queue(), true, false, false, false, nil)
	require.NoError(t, err)
	if q.Messages == 0 {
		return nil
	}
	require.NoError(t, ch.Qos(1000, 0, false))
	ds, err := ch.Consume(b.top.Queue(), "", true, false, false, false, nil)
	require.NoError(t, err)
	var out []amqp.Delivery
	for len(out) < q.Messages {
		select {
		case d := <-ds:
			out = append(out, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("drained %d of %d messages", len(out), q.Messages)
		}
	}
	return out
}

func decodeAll(t *testing.T, ds []amqp.Delivery) map[int64]customer.Customer {
	t.Helper()
	rows := map[int64]customer.Customer{}
	for _, d := range ds {
		c, err := customer.Decode(d.Body)
		require.NoError(t, err)
		require.Equal(t, "application/json", d.ContentType)
		require.Equal(t, amqp.Persistent, d.DeliveryMode)
		require.Equal(t, c.Row, d.Headers["x-row"])
		require.Contains(t, d.MessageId, fmt.Sprintf(":%d", c.Row))
		rows[c.Row] = c
	}
	return rows
}

func TestImportExcelExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, logs, err := b.run(t.Context(), t, "--file", "testdata/excel_export.csv")
	require.NoError(t, err, logs)
	require.Equal(t, int64(7), s.Rows)
	require.Equal(t, int64(5), s.Published)
	require.Equal(t, int64(2), s.Rejected)
	require.True(t, s.Complete)
	require.Contains(t, logs, "delimiter ';' (detected)")

	rows := decodeAll(t, b.drain(t))
	require.Len(t, rows, 5)
	require.Equal(t, customer.Customer{
		Email: "ana@example.com", Name: "Ana Lopez", FirstName: "Ana", LastName: "Lopez", Phone: "+34 600",
		Attributes: map[string]string{"id": "1", "company": "Acme; Inc."}, Source: rows[1].Source, Row: 1,
	}, rows[1])
	require.Equal(t, "José García", rows[2].Name, "Windows-1252 fields are decoded")
	require.Equal(t, `Quote "Q" Ltd`, rows[2].Attributes["company"])
	require.Equal(t, "line one\nline two", rows[5].Attributes["company"], "encoding/csv folds a quoted CRLF to LF")
	require.Equal(t, "short@example.com", rows[7].Email)

	f, err := os.Open(s.Rejects)
	require.NoError(t, err)
	defer f.Close()
	rejects, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"reason", "row", "id", "first_name", "last_name", "email", "phone", "company"}, rejects[0])
	require.Len(t, rejects, 3)
	require.Equal(t, "3", rejects[1][1])
	require.Equal(t, "E-mail is empty", rejects[1][0], "the reason names the file's own column")
	require.Equal(t, "4", rejects[2][1])
	require.Contains(t, rejects[2][0], "no @")
}

func TestDryRunPublishesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env["AMQP_URL"] = "amqp://guest:guest@127.0.0.1:1/" // never dialled
	var stdout, stderr testenv.Buffer
	err := run(t.Context(), []string{"--file", "testdata/excel_export.csv", "--dry-run"}, func(k string) string { return b.env[k] }, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	var s map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &s))
	require.Equal(t, true, s["dry_run"])
	require.InDelta(t, 5, s["valid"], 0)
	require.InDelta(t, 2, s["rejected"], 0)
	require.NotContains(t, s, "published", "a dry run publishes nothing: %s", stdout.String())
	require.NotContains(t, s, "checkpoint_file", "a dry run writes no checkpoint")
	require.FileExists(t, s["rejects_file"].(string))
	require.NoFileExists(t, filepath.Join(b.dir, "excel_export.csv.checkpoint"))
}

func TestUnreachableBrokerIsAClearError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env["AMQP_URL"] = "amqp://guest:s3cret@127.0.0.1:1/"
	_, _, err := b.run(t.Context(), t, "--file", "testdata/excel_export.csv")
	require.ErrorContains(t, err, "is RabbitMQ running?")
	require.ErrorContains(t, err, "127.0.0.1:1")
	require.NotContains(t, err.Error(), "s3cret")
}

// A broker that answers and refuses is not asked again, and is not taken
// for one that is not running.
func TestRefusingBrokerSaysWhy(t *testing.T) {
	t.Parallel()
	broker, err := url.Parse(testenv.AMQPURL(t))
	require.NoError(t, err)
	badPassword, noVhost := *broker, *broker
	badPassword.User = url.UserPassword("guest", "s3cret-wrong")
	noVhost.Path = "/no-such-vhost"
	tests := []struct{ name, url, says string }{
		{"bad password", badPassword.String(), "user name or password"},
		{"missing vhost", noVhost.String(), "virtual host does not exist"},
		{"malformed", "amqp//guest@127.0.0.1/", "--amqp-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.env["AMQP_URL"] = tt.url
			_, _, err := b.run(t.Context(), t, "--file", "testdata/excel_export.csv")
			require.True(t, rabbit.IsPermanent(err), "not permanent: %v", err)
			require.ErrorContains(t, err, tt.says)
			require.NotContains(t, err.Error(), "is RabbitMQ running")
			require.NotContains(t, err.Error(), "s3cret-wrong")
		})
	}
}

func TestBadInputIsNamed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--file is required"},
		{[]string{"--file", "testdata/missing.csv"}, "open --file"},
		{[]string{"--file", "testdata"}, "is a directory"},
		{[]string{"--file", "x.csv", "--parallel", "0"}, "--parallel"},
		{[]string{"--file", "x.csv", "--delimiter", "::"}, "--delimiter"},
		{[]string{"--file", "x.csv", "--header", "maybe"}, "header"},
		{[]string{"--file", "testdata/excel_export.csv", "--columns", "name,phone"}, "email"},
		{[]string{"--file", "x.csv", "extra"}, "unexpected argument"},
	} {
		_, _, err := b.run(t.Context(), t, tc.args...)
		require.ErrorContains(t, err, tc.want, tc.args)
	}
}

// writeCSV writes n rows name,email; every 50th row has no valid email.
func writeCSV(t *testing.T, path string, n int) (valid int) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := bufio.NewWriter(f)
	for i := 1; i <= n; i++ {
		if i%50 == 0 {
			fmt.Fprintf(w, "Nobody %d,not-an-email-%d\n", i, i)
			continue
		}
		valid++
		fmt.Fprintf(w, "Person %d,person%d@example.com\n", i, i)
	}
	require.NoError(t, w.Flush())
	require.NoError(t, f.Close())
	return valid
}

// waitCheckpoint waits until the checkpoint says some rows, not all, are done.
func waitCheckpoint(t *testing.T, path string) {
	t.Helper()
	require.Eventually(t, func() bool {
		cp, found, err := importer.LoadCheckpoint(path)
		return err == nil && found && cp.Row > 0 && !cp.Complete
	}, 30*time.Second, 5*time.Millisecond)
}

func TestBrokerLostMidRunReconnectsAndLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "people.csv")
	valid := writeCSV(t, file, 20000)
	proxy, err := tcpproxy.Start(t.Context(), "127.0.0.1:5672")
	require.NoError(t, err)
	defer proxy.Close()
	b.env["AMQP_URL"] = "amqp://guest:guest@" + proxy.Addr() + "/"

	go func() {
		waitCheckpoint(t, file+".checkpoint")
		proxy.Down()
		time.Sleep(500 * time.Millisecond)
		proxy.Up()
	}()
	s, logs, err := b.run(t.Context(), t, "--file", file, "--window", "64", "--checkpoint-every", "10ms")
	require.NoError(t, err, logs)
	require.Contains(t, logs, "reconnected to RabbitMQ")
	require.True(t, s.Complete)

	rows := decodeAll(t, b.drain(t))
	require.Len(t, rows, valid, "every valid row is in the queue (some maybe twice)")
}

func TestResumeAfterStopNeitherSkipsNorRepeatsMuch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "people.csv")
	valid := writeCSV(t, file, 20000)

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		waitCheckpoint(t, file+".checkpoint")
		cancel() // as SIGINT would
	}()
	first, _, err := b.run(ctx, t, "--file", file, "--checkpoint-every", "10ms")
	require.Error(t, err)
	require.Contains(t, err.Error(), "--resume")
	require.False(t, first.Complete)

	second, logs, err := b.run(t.Context(), t, "--file", file, "--resume")
	require.NoError(t, err, logs)
	require.True(t, second.Complete)
	require.Positive(t, second.ResumedFrom)
	require.Less(t, second.Rows, int64(20000), "resuming does not read the file again")

	rows := decodeAll(t, b.drain(t))
	require.Len(t, rows, valid, "no row skipped")

	again, logs, err := b.run(t.Context(), t, "--file", file, "--resume")
	require.NoError(t, err, logs)
	require.True(t, again.Complete)
	require.Zero(t, again.Rows, "a completed import is not repeated by --resume")
}

func TestResumeRefusesAChangedFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "people.csv")
	writeCSV(t, file, 100)
	_, logs, err := b.run(t.Context(), t, "--file", file)
	require.NoError(t, err, logs)
	writeCSV(t, file, 120)
	_, _, err = b.run(t.Context(), t, "--file", file, "--resume")
	require.ErrorContains(t, err, "belongs to another file or the file changed")
}

func TestHelpListsEveryFlagWithItsEnvVar(t *testing.T) {
	t.Parallel()
	var stdout, stderr testenv.Buffer
	err := run(t.Context(), []string{"--help"}, func(string) string { return "" }, &stdout, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, want := range []string{"--file path  (env PRODUCER_FILE", "--parallel int  (env PRODUCER_PARALLEL, default 4)", "--amqp-url URL  (env AMQP_URL", "--resume  (env PRODUCER_RESUME, default false)"} {
		require.Contains(t, stderr.String(), want)
	}
}
