package importer_test

import (
	"fmt"
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
