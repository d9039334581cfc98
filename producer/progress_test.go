package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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

func TestProgressBarShowsRowsAndBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "people.csv")
	var b strings.Builder
	b.WriteString("name,email\n")
	for i := range 500 {
		fmt.Fprintf(&b, "Person %d,p%d@example.com\n", i, i)
	}
	b.WriteString("Nobody,not-an-email\n")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))

	var stdout, stderr testenv.Buffer
	getenv := func(k string) string { return map[string]string{"PRODUCER_STATE_DIR": dir}[k] }
	require.NoError(t, run(t.Context(), []string{"--file", file, "--dry-run", "--progress", "bar"}, getenv, &stdout, &stderr))
	out := stderr.String()
	require.Contains(t, out, "501 rows")
	require.Contains(t, out, "500 valid, 1 rejected")
	require.Contains(t, out, "100%")
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
