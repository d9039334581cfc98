package main

import (
	"bytes"
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
	defaults := defaultConfig()
	for _, o := range options(&defaults) {
		def := o.value.String()
		if def == "" {
			def = `""`
		}
		require.Contains(t, help, "  --"+o.name+"\n", o.name)
		require.Contains(t, help, "env "+o.env+", default "+def, o.name)
	}
	require.Contains(t, help, "  --version\n")
}
