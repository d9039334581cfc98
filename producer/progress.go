package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
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

// drawProgress redraws a bar on out until stop closes. The bar measures
// bytes, since a file's row count is not known before it is read; rows,
// rows/s, published and rejected go in its description, and the ETA comes
// from the bytes.
//
// A resumed run measures only what is left from start, its first byte, so
// that the rate and the ETA are this run's.
func (p *producer) drawProgress(out io.Writer, start int64, stop <-chan struct{}) {
	total := p.size - start
	if p.size <= 0 {
		total = -1 // unknown size (a pipe): a spinner
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(barEvery/2),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)
	started := time.Now()
	tick := time.NewTicker(barEvery)
	defer tick.Stop()
	update := func() {
		bar.Describe(p.progressLine(time.Since(started)))
		_ = bar.Set64(p.bytes.Load() - start)
	}
	for {
		select {
		case <-stop:
			update()
			// Keep the last state (Finish would fill the bar even when the
			// run stopped early) and leave the line for what follows.
			_ = bar.Exit()
			_, _ = fmt.Fprintln(out)
			return
		case <-tick.C:
			update()
		}
	}
}

// progressLine is the bar's description: the counts a person watching an
// import wants besides the bytes.
func (p *producer) progressLine(elapsed time.Duration) string {
	rows := p.rows.Load()
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(rows) / s
	}
	verb := "published"
	if p.cfg.DryRun {
		verb = "valid"
	}
	return fmt.Sprintf("%d rows (%.0f rows/s), %d %s, %d rejected", rows, rate, p.published.Load(), verb, p.rej.total())
}
