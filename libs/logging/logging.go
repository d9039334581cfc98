// Package logging builds the slog logger every binary writes to stderr with.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats lists the accepted --log-format values.
const Formats = "text|json"

// New returns a logger writing format ("text" or "json") at level ("debug",
// "info", "warn", "error") to w.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
