package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		out  string
	}{
		{"success", nil, 0, ""},
		{"help", fmt.Errorf("parse: %w", flag.ErrHelp), 0, ""},
		{"error", errors.New("broker unreachable"), 1, "tool: broker unreachable\n"},
		{"own status", fmt.Errorf("run: %w", &ExitError{Code: 2, Err: errors.New("bad flag")}), 2, "tool: run: bad flag\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			assert.Equal(t, tc.code, ExitCode("tool", tc.err, &stderr))
			assert.Equal(t, tc.out, stderr.String())
		})
	}
}
