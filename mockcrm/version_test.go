package main

import (
	"bytes"
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"--version"}, env(nil), &stdout, &stderr))
	require.Regexp(t, `^mockcrm \S+ go\S+\n$`, stdout.String())
	require.Empty(t, stderr.String(), "--version starts no server")
}

func TestRunHelpListsEveryOption(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"--help"}, env(nil), &stdout, &bytes.Buffer{}))
	help := stdout.String()
	var cfg config
	flags(&cfg, env(nil), io.Discard).FlagSet().VisitAll(func(f *flag.Flag) {
		require.Contains(t, help, "--"+f.Name+" ", f.Name)
		_, usage := flag.UnquoteUsage(f)
		require.Contains(t, help, usage, f.Name)
	})
}
