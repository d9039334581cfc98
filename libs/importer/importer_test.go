package importer_test

import (
	"encoding/csv"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/importer"
	"github.com/custimport/custimport/libs/rabbit"
	"github.com/custimport/custimport/libs/testenv"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "people.csv")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// A second binary runs an import with its own id, follows its progress and
// finds the id on every message.
func TestRunCarriesTheImportIDAndReportsProgress(t *testing.T) {
	t.Parallel()
	top := testenv.Topology(t)
	var b strings.Builder
	b.WriteString("name,email\n")
	for i := range 300 {
		fmt.Fprintf(&b, "Person %d,p%d@example.com\n", i, i)
	}
	b.WriteString("Nobody,not-an-email\n")
	file := writeFile(t, b.String())

	var mu sync.Mutex
	var seen []importer.Progress
	sum, err := importer.Run(t.Context(), importer.Config{
		File: file, ImportID: "imp-42", AMQPURL: testenv.AMQPURL(t), Topology: top,
		ProgressEvery: time.Millisecond,
		OnProgress: func(p importer.Progress) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, p)
		},
	})
	require.NoError(t, err)
	require.Equal(t, int64(301), sum.Rows)
	require.Equal(t, int64(300), sum.Published)
	require.Equal(t, "imp-42", sum.ImportID)

	mu.Lock()
	require.GreaterOrEqual(t, len(seen), 2, "once before the first row and once at the end")
	require.False(t, seen[0].Done)
	last := seen[len(seen)-1]
	mu.Unlock()
	require.True(t, last.Done)
	require.Equal(t, importer.Progress{
		Rows: 301, Published: 300, Rejected: 1, Bytes: int64(b.Len()), Total: int64(b.Len()), Elapsed: last.Elapsed, Done: true,
	}, last)

	conn, err := rabbit.Dial(t.Context(), testenv.AMQPURL(t), t.Name())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	for range 300 {
		d, ok, err := ch.Get(top.Queue(), true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "imp-42", d.Headers["x-import-id"])
		c, err := customer.Decode(d.Body)
		require.NoError(t, err)
		require.Equal(t, "imp-42", c.ImportID)
	}
}

func TestRunWithoutAnEmailColumnSaysSo(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "name,phone\nAna,123\n")
	_, err := importer.Run(t.Context(), importer.Config{File: file, DryRun: true})
	require.ErrorIs(t, err, csvsource.ErrNoEmailColumn)
}

// Two runs with one checkpoint: the second refuses at once and names the
// first's process; the lock of a process that is gone blocks nobody.
func TestASecondRunOnTheSameCheckpointRefuses(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "name,email\nAnn,ann@x.com\n")
	cfg := importer.Config{File: file, DryRun: true}

	hold := make(chan struct{})
	first := make(chan error, 1)
	started := make(chan struct{})
	var once sync.Once
	go func() {
		c := cfg
		c.OnProgress = func(importer.Progress) {
			once.Do(func() { close(started) })
			<-hold
		}
		_, err := importer.Run(t.Context(), c)
		first <- err
	}()
	<-started
	_, err := importer.Run(t.Context(), cfg)
	close(hold)
	require.ErrorIs(t, err, importer.ErrLocked)
	require.ErrorContains(t, err, fmt.Sprintf("pid %d on ", os.Getpid()))
	require.ErrorContains(t, err, file+".checkpoint.lock")
	require.NoError(t, <-first)
	require.NoFileExists(t, file+".checkpoint.lock", "the lock goes with its run")

	// A lock file left by a process that died: taken over.
	require.NoError(t, os.WriteFile(file+".checkpoint.lock", []byte("pid 999999 on elsewhere since 2026-01-01T00:00:00Z\n"), 0o600))
	var logs testenv.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	_, err = importer.Run(t.Context(), cfg)
	require.NoError(t, err)
	require.Contains(t, logs.String(), "taking over the lock of an import that is no longer running")
	require.Contains(t, logs.String(), "pid 999999")
}

func TestEveryRowRejectedIsAnError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, text, want string }{
		{"no valid email", "Ann,not-an-email\nBob,also-bad\n", `every row was rejected (2 read; the first, row 1: email "not-an-email" has no @)`},
		// --columns given: the one record (a whole file with line ends
		// the reader does not know) is a rejected row.
		{"one record over the limit", strings.Repeat("Ann,a@x.com\v", 100_000), "every row was rejected (1 read; the first, row 1: record too long: more than 1048576 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, tc.text)
			sum, err := importer.Run(t.Context(), importer.Config{File: file, DryRun: true, CSV: csvsource.Config{Header: csvsource.HeaderNo, Columns: []string{"name", "email"}}})
			require.ErrorIs(t, err, importer.ErrAllRejected)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "see the rejects report "+file+".rejects.csv")
			require.Equal(t, sum.Rows, sum.Rejected)
		})
	}
}

// Reject reasons name the file's own columns, the same way every run.
func TestRejectReasonsNameTheFilesColumns(t *testing.T) {
	t.Parallel()
	long, half := strings.Repeat("x", 6000), strings.Repeat("y", 600)
	file := writeFile(t, "E-Mail,First Name,Last Name,Notes\n"+
		"ok@x.com,Ann,Lee,\n"+
		"a@x.com,"+long+",Lee,\n"+
		"b@x.com,"+half+","+half+",\n"+
		"nope,Bob,Ray,\n"+
		"c@x.com,Cy,Ray,"+long+"\n")
	for range 3 {
		_, err := importer.Run(t.Context(), importer.Config{File: file, DryRun: true})
		require.NoError(t, err)
		f, err := os.Open(file + ".rejects.csv")
		require.NoError(t, err)
		rows, err := csv.NewReader(f).ReadAll()
		require.NoError(t, f.Close())
		require.NoError(t, err)
		var reasons []string
		for _, row := range rows[1:] {
			reasons = append(reasons, row[0])
		}
		require.Equal(t, []string{
			"First Name is 6000 bytes, at most 1024",
			"First Name + Last Name (joined as the name) is 1201 bytes, at most 1024",
			`E-Mail "nope" has no @`,
			"Notes is 6000 bytes, at most 1024",
		}, reasons)
	}
}
