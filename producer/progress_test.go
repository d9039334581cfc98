package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/importer"
	"github.com/custimport/custimport/libs/testenv"
)

func TestProgressWriter(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = file.Close() })
	var buf bytes.Buffer
	for _, tc := range []struct {
		mode    string
		stderr  io.Writer
		wantBar bool
	}{
		{progressAuto, &buf, false},
		{progressAuto, file, false}, // a file is not a terminal: log lines
		{progressBar, &buf, true},
		{progressBar, file, true},
		{progressLog, &buf, false},
	} {
		require.Equal(t, tc.wantBar, progressWriter(tc.mode, tc.stderr) != nil, "%s on %T", tc.mode, tc.stderr)
	}
}

// visible is what a terminal shows of a redraw: escapes removed.
func visible(s string) string { return strings.ReplaceAll(s, "\x1b[K", "") }

func TestProgressLineFitsTheWidth(t *testing.T) {
	t.Parallel()
	p := importer.Progress{Rows: 1234567, Published: 1230000, Rejected: 4567, Bytes: 23_400_000, Total: 55_169_000, Elapsed: 83 * time.Second}
	for _, tc := range []struct {
		columns int
		has     []string
		hasNot  []string
	}{
		{160, []string{" 42%", "[███", "1,234,567 rows", "1,230,000 published", "4,567 rejected", "14,874 rows/s", "23 MB/55 MB", "ETA 1m53s", "elapsed 1m23s"}, nil},
		{80, []string{" 42%", "[███", "1,234,567 rows", "1,230,000 published", "4,567 rejected"}, []string{"rows/s", "MB", "elapsed"}},
		{60, []string{" 42%", "[███", "1,230,000 published", "4,567 rejected"}, []string{"1,234,567 rows", "ETA", "rows/s"}},
		{30, []string{" 42%", "1,230,000 published"}, []string{"[", "rejected"}},
	} {
		line := progressLine(p, tc.columns-1)
		require.LessOrEqual(t, utf8.RuneCountInString(line), tc.columns-1, "%d: %q", tc.columns, line)
		for _, want := range tc.has {
			require.Contains(t, line, want, "%d columns", tc.columns)
		}
		for _, dropped := range tc.hasNot {
			require.NotContains(t, line, dropped, "%d columns", tc.columns)
		}
	}
	dry := progressLine(importer.Progress{Rows: 10, Valid: 9, Rejected: 1, Total: -1, DryRun: true}, 79)
	require.Contains(t, dry, "9 valid")
	require.NotContains(t, dry, "%", "no percent of an unknown size")
}

// openPTY returns a terminal of the given width: tty is what the producer
// writes to, out what the terminal received.
func openPTY(t *testing.T, columns int) (tty *os.File, resize func(int), out func() string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	resize = func(c int) { require.NoError(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: uint16(c)})) } //nolint:gosec // small test widths
	resize(columns)
	var buf testenv.Buffer
	var copying sync.WaitGroup
	copying.Go(func() { _, _ = io.Copy(&buf, ptmx) })
	t.Cleanup(func() { _ = ptmx.Close() })
	out = func() string {
		_ = tty.Close() // the copy ends once the terminal has nothing more
		copying.Wait()
		return buf.String()
	}
	return tty, resize, out
}

// redraws are the bar's lines in what a terminal received.
func redraws(out string) []string {
	var lines []string
	for seg := range strings.SplitSeq(strings.ReplaceAll(out, "\n", "\r"), "\r") {
		if seg = visible(seg); strings.Contains(seg, "%  ") {
			lines = append(lines, seg)
		}
	}
	return lines
}

// writePeople writes a CSV of n valid rows and one rejected.
func writePeople(t *testing.T, n int) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "people.csv")
	var b strings.Builder
	b.WriteString("name,email\n")
	for i := range n {
		fmt.Fprintf(&b, "Person %d,p%d@example.com\n", i, i)
	}
	b.WriteString("Nobody,not-an-email\n")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
	return file
}

// The bar on a real terminal of 60, 80 and 160 columns: every redraw fits
// on its line, and the last shows the whole file.
func TestProgressBarOnATerminal(t *testing.T) {
	t.Parallel()
	file := writePeople(t, 20000)

	for _, columns := range []int{60, 80, 160} {
		t.Run(strconv.Itoa(columns), func(t *testing.T) {
			t.Parallel()
			tty, _, out := openPTY(t, columns)
			var stdout testenv.Buffer
			getenv := func(k string) string { return map[string]string{"PRODUCER_STATE_DIR": t.TempDir()}[k] }
			require.NoError(t, run(t.Context(), []string{"--file", file, "--dry-run", "--log-level", "warn"}, getenv, &stdout, tty))
			lines := redraws(out())
			require.NotEmpty(t, lines)
			for _, l := range lines {
				require.LessOrEqual(t, utf8.RuneCountInString(l), columns-1, "%q", l)
			}
			last := lines[len(lines)-1]
			require.Contains(t, last, "100%")
			require.Contains(t, last, "20,000 valid")
			require.Contains(t, last, "1 rejected")
			if columns >= 80 {
				require.Contains(t, last, "20,001 rows")
			}
			if columns >= 160 {
				require.Contains(t, last, "elapsed ")
			}
			require.Contains(t, stdout.String(), `"rows":20001`, "the summary stays on stdout")
		})
	}
}

// The bar asks the terminal's width at every redraw, so it follows a resize.
func TestProgressBarFollowsAResize(t *testing.T) {
	t.Parallel()
	tty, resize, out := openPTY(t, 160)
	bar := newTerminalBar(tty)
	p := importer.Progress{Rows: 1234567, Published: 1230000, Rejected: 4567, Bytes: 23_400_000, Total: 55_169_000, Elapsed: 83 * time.Second}
	bar.update(p)
	resize(60)
	bar.update(p)
	resize(80)
	p.Done = true
	bar.update(p)
	lines := redraws(out())
	require.Len(t, lines, 3)
	require.Contains(t, lines[0], "rows/s")
	require.LessOrEqual(t, utf8.RuneCountInString(lines[1]), 59, "%q", lines[1])
	require.LessOrEqual(t, utf8.RuneCountInString(lines[2]), 79, "%q", lines[2])
	require.Contains(t, lines[2], "1,234,567 rows")
}

func TestProgressBarShowsRowsAndBytes(t *testing.T) {
	t.Parallel()
	file := writePeople(t, 500)
	dir := filepath.Dir(file)

	var stdout, stderr testenv.Buffer
	getenv := func(k string) string { return map[string]string{"PRODUCER_STATE_DIR": dir}[k] }
	require.NoError(t, run(t.Context(), []string{"--file", file, "--dry-run", "--progress", "bar"}, getenv, &stdout, &stderr))
	out := stderr.String()
	require.Contains(t, out, "100%")
	require.Contains(t, out, "500 valid  1 rejected")
	require.NotContains(t, out, `msg=progress`)
	require.Contains(t, stdout.String(), `"rows":501`, "the summary stays on stdout")
}

func TestBadProgressModeIsNamed(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"--file", "x.csv", "--progress", "fancy"}, func(string) string { return "" }, &testenv.Buffer{}, &testenv.Buffer{})
	require.ErrorContains(t, err, "--progress")
}

func TestProducerHelpListsEveryVariableAndDefault(t *testing.T) {
	t.Parallel()
	var asked []string
	getenv := func(k string) string { asked = append(asked, k); return "" }
	var stderr testenv.Buffer
	err := run(t.Context(), []string{"--help"}, getenv, &testenv.Buffer{}, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	help := stderr.String()
	require.NotEmpty(t, asked)
	for _, env := range asked {
		require.Contains(t, help, "env "+env+",", "help lacks the variable %s", env)
	}
	for line := range strings.Lines(help) {
		if strings.HasPrefix(line, "  --") {
			require.Contains(t, line, "default ", "flag without a default: %s", line)
		}
	}
	require.Contains(t, help, "--progress string  (env PRODUCER_PROGRESS, default auto)")
	require.Contains(t, help, "--version  (default false)")
}

func TestProducerVersion(t *testing.T) {
	t.Parallel()
	var stdout testenv.Buffer
	// --version needs no --file.
	require.NoError(t, run(t.Context(), []string{"--version"}, func(string) string { return "" }, &stdout, &testenv.Buffer{}))
	require.Regexp(t, `^producer \S+ go\S+\n$`, stdout.String())
}

func TestStateDirIsCreated(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "imports")
	var stdout, stderr testenv.Buffer
	getenv := func(string) string { return "" }
	require.NoError(t, run(t.Context(), []string{"--file", "testdata/excel_export.csv", "--dry-run", "--state-dir", dir}, getenv, &stdout, &stderr))
	require.FileExists(t, filepath.Join(dir, "excel_export.csv.rejects.csv"))
}

// The project's own sample needs no guess, and neither does a file whose
// layout is given; a headerless file left to guessing is warned about.
func TestGuessWarningOnlyForAGuess(t *testing.T) {
	t.Parallel()
	seed := filepath.Join(testenv.SeedsDir(t), "name_email_example_noheader.csv")
	for _, tc := range []struct {
		args []string
		warn bool
	}{
		{[]string{"--file", "../data/customers_sample.csv"}, false},
		{[]string{"--file", seed, "--columns", "name,email"}, false},
		{[]string{"--file", seed, "--header", "no", "--columns", "name,email"}, false},
		{[]string{"--file", seed}, true},
	} {
		var stderr testenv.Buffer
		getenv := func(k string) string { return map[string]string{"PRODUCER_STATE_DIR": t.TempDir()}[k] }
		require.NoError(t, run(t.Context(), append(tc.args, "--dry-run", "--progress", "log"), getenv, &testenv.Buffer{}, &stderr))
		require.Equal(t, tc.warn, strings.Contains(stderr.String(), "guessed the CSV layout"), "%v: %s", tc.args, stderr.String())
	}
}
