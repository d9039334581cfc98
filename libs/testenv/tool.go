package testenv

import (
	"os/exec"
	"testing"
)

// Tool returns the path of a command-line tool a test runs (promtool,
// chromium), found on PATH. Without it the test is skipped with what to
// install, or fails under CI=true, where .ci/run installs every tool the
// tests need.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, name+" is not on PATH (install it: "+install+")")
	}
	return path
}
