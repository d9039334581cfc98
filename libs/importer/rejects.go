package importer

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// rejects writes the rows that were not published: the reason, the row
// number and the original fields, so that they can be fixed and imported.
type rejects struct {
	mu    sync.Mutex // the reader adds, the checkpointer flushes
	f     *os.File
	buf   *bufio.Writer
	w     *csv.Writer
	count int64
	first string // the first reason, for a run that rejects every row
}

func openRejects(path string, appendTo bool, columns []string) (*rejects, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644) //nolint:gosec // the path is the operator's choice
	if err != nil {
		return nil, fmt.Errorf("open rejects report (choose another place with --rejects): %w", err)
	}
	buf := bufio.NewWriter(f)
	r := &rejects{f: f, buf: buf, w: csv.NewWriter(buf)}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open rejects report: %w", err)
	}
	if st.Size() == 0 {
		if err := r.w.Write(append([]string{"reason", "row"}, columns...)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write rejects report: %w", err)
		}
	}
	return r, nil
}

func (r *rejects) add(row int64, reason string, fields []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if r.first == "" {
		r.first = fmt.Sprintf("row %d: %s", row, reason)
	}
	if err := r.w.Write(append([]string{reason, strconv.FormatInt(row, 10)}, fields...)); err != nil {
		return fmt.Errorf("write rejects report: %w", err)
	}
	return nil
}

// flush makes what was written so far durable; the producer flushes before
// each checkpoint so that a resumed run never loses a rejected row.
func (r *rejects) flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Flush()
	if err := r.w.Error(); err != nil {
		return fmt.Errorf("write rejects report: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("write rejects report: %w", err)
	}
	return nil
}

func (r *rejects) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

func (r *rejects) firstReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

func (r *rejects) close() error {
	err := r.flush()
	if cerr := r.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close rejects report: %w", cerr)
	}
	return err
}
