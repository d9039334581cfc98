package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/custimport/custimport/libs/importer"
)

// Progress modes (--progress).
const (
	progressAuto = "auto" // a bar on a terminal, log lines otherwise
	progressBar  = "bar"
	progressLog  = "log"
)

// barEvery is how often the bar is redrawn: often enough to look alive,
// rarely enough to cost nothing next to the publishing.
const barEvery = 200 * time.Millisecond

// defaultColumns is the width assumed where the terminal's is not known
// (--progress bar into a file or a pipe).
const defaultColumns = 80

// progressWriter decides where a progress bar goes: stderr for "bar", and
// for "auto" when stderr is a terminal. Nil means periodic log lines, the
// right thing for a file, a pipe or a container log.
func progressWriter(mode string, stderr io.Writer) io.Writer {
	switch mode {
	case progressBar:
		return stderr
	case progressAuto:
		if isTerminal(stderr) {
			return stderr
		}
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) //nolint:gosec // a file descriptor fits in an int
}

// terminalColumns returns a function that tells the width of out now, asked
// at every redraw so that the bar follows a resize of the window.
func terminalColumns(out io.Writer) func() int {
	return func() int {
		if f, ok := out.(*os.File); ok {
			if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 { //nolint:gosec // a file descriptor fits in an int
				return w
			}
		}
		return defaultColumns
	}
}

// terminalBar draws an import's progress on one line of a terminal, redrawn
// in place, never wider than the terminal (a line one column too wide wraps,
// and every redraw then fills a new line).
type terminalBar struct {
	out     io.Writer
	columns func() int
}

func newTerminalBar(out io.Writer) *terminalBar {
	return &terminalBar{out: out, columns: terminalColumns(out)}
}

// update is the import's OnProgress: always called from one goroutine.
func (b *terminalBar) update(p importer.Progress) {
	// The last column stays free: some terminals wrap when it is written.
	line := "\r" + progressLine(p, b.columns()-1) + "\x1b[K"
	if p.Done {
		line += "\n"
	}
	_, _ = io.WriteString(b.out, line)
}

// A part of the progress line. Parts are dropped in order of rank, highest
// first, until the line fits; the bar takes what width is left.
type part struct {
	rank int
	text string
}

// Ranks: what a person watching an import looks at first has the lowest.
const (
	rankPercent = iota
	rankDone
	rankRejected
	rankBar
	rankRows
	rankETA
	rankRate
	rankBytes
	rankElapsed
)

const (
	minBar    = 10
	maxBar    = 40
	separator = "  "
)

// progressLine is the bar's line, at most width columns: the percent of the
// file read, a bar, the rows read, published (a dry run's valid) and
// rejected, the rate, the bytes, the time left and the time taken.
func progressLine(p importer.Progress, width int) string {
	verb, done := "published", p.Published
	if p.DryRun {
		verb, done = "valid", p.Valid
	}
	known := p.Total > 0
	frac := 0.0
	if known {
		frac = min(1, float64(p.Bytes)/float64(p.Total))
	}
	parts := []part{}
	if known {
		parts = append(parts, part{rankPercent, fmt.Sprintf("%3.0f%%", 100*frac)}, part{rankBar, ""})
	}
	parts = append(parts,
		part{rankRows, count(p.Rows) + " rows"},
		part{rankDone, count(done) + " " + verb},
		part{rankRejected, count(p.Rejected) + " rejected"},
		part{rankRate, count(int64(p.RowsPerSec())) + " rows/s"},
	)
	if known {
		parts = append(parts, part{rankBytes, bytesText(p.Bytes) + "/" + bytesText(p.Total)})
	} else {
		parts = append(parts, part{rankBytes, bytesText(p.Bytes)})
	}
	if known && frac > 0 && frac < 1 && !p.Done {
		left := time.Duration(float64(p.Elapsed) * (1 - frac) / frac)
		parts = append(parts, part{rankETA, "ETA " + clock(left)})
	}
	parts = append(parts, part{rankElapsed, "elapsed " + clock(p.Elapsed)})

	for drop := rankElapsed; drop >= rankPercent; drop-- {
		line, ok := layoutLine(parts, width, frac)
		if ok {
			return line
		}
		parts = without(parts, drop)
	}
	return ""
}

// layoutLine joins parts, giving the bar the width left (at most maxBar); ok
// is false when they do not fit, or the bar would be under minBar.
func layoutLine(parts []part, width int, frac float64) (string, bool) {
	fixed := 0
	for i, pt := range parts {
		if i > 0 {
			fixed += len(separator)
		}
		if pt.rank != rankBar {
			fixed += utf8.RuneCountInString(pt.text)
		}
	}
	barWidth := 0
	for _, pt := range parts {
		if pt.rank == rankBar {
			barWidth = min(maxBar, width-fixed)
			if barWidth < minBar {
				return "", false
			}
		}
	}
	if fixed+barWidth > width {
		return "", false
	}
	texts := make([]string, len(parts))
	for i, pt := range parts {
		texts[i] = pt.text
		if pt.rank == rankBar {
			texts[i] = bar(barWidth, frac)
		}
	}
	return strings.Join(texts, separator), true
}

func without(parts []part, rank int) []part {
	out := parts[:0:0]
	for _, pt := range parts {
		if pt.rank != rank {
			out = append(out, pt)
		}
	}
	return out
}

// bar draws frac of width columns, brackets included.
func bar(width int, frac float64) string {
	inner := width - 2
	filled := int(frac * float64(inner))
	return "[" + strings.Repeat("█", filled) + strings.Repeat("·", inner-filled) + "]"
}

// count writes n with thousands separators: 1,234,567.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// bytesText writes a size in decimal units: 512 B, 55 kB, 1.2 GB.
func bytesText(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	prefix := "kMGT"[i-1 : i]
	if f < 10 {
		return fmt.Sprintf("%.1f %sB", f, prefix)
	}
	return fmt.Sprintf("%.0f %sB", f, prefix)
}

// clock writes a duration to the second: 42s, 3m05s, 1h02m.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
	}
}
