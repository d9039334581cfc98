package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
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

// terminalBar draws an import's progress on a terminal. It measures bytes,
// since a file's row count is not known before it is read; rows, rows/s,
// published and rejected go in its description, and the ETA comes from the
// bytes. A resumed run measures only what is left from where it started, so
// that the rate and the ETA are this run's.
type terminalBar struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

func newTerminalBar(out io.Writer) *terminalBar { return &terminalBar{out: out} }

// update is the import's OnProgress: always called from one goroutine.
func (b *terminalBar) update(p importer.Progress) {
	if b.bar == nil {
		b.bar = progressbar.NewOptions64(p.Total,
			progressbar.OptionSetWriter(b.out),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(barEvery/2),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
		)
	}
	b.bar.Describe(progressLine(p))
	_ = b.bar.Set64(p.Bytes)
	if p.Done {
		// Keep the last state (Finish would fill the bar even when the run
		// stopped early) and leave the line for what follows.
		_ = b.bar.Exit()
		_, _ = fmt.Fprintln(b.out)
	}
}

// progressLine is the bar's description: the counts a person watching an
// import wants besides the bytes.
func progressLine(p importer.Progress) string {
	verb := "published"
	if p.DryRun {
		verb = "valid"
	}
	return fmt.Sprintf("%d rows (%.0f rows/s), %d %s, %d rejected", p.Rows, p.RowsPerSec(), p.Published, verb, p.Rejected)
}
