package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Checkpoint is what --resume continues from: every row up to Row is either
// confirmed by the broker or rejected, and the next row starts at Offset.
type Checkpoint struct {
	File        string    `json:"file"`
	Fingerprint string    `json:"fingerprint"`
	Row         int64     `json:"row"`
	Offset      int64     `json:"offset"`
	Complete    bool      `json:"complete"`
	SavedAt     time.Time `json:"saved_at"`
}

// fingerprint identifies the input file by its size and the hash of its
// first MiB: enough to refuse resuming a different file, cheap for a huge one.
func fingerprint(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", st.Size())
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<20)); err != nil {
		return "", fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// LoadCheckpoint reads the checkpoint at path; found is false when there is none.
func LoadCheckpoint(path string) (Checkpoint, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpoint %s is damaged (%w): delete it to start over", path, err)
	}
	return cp, true, nil
}

// save writes the checkpoint atomically: a crash leaves the old one or the
// new one, never half of one.
func (cp Checkpoint) save(path string) error {
	cp.SavedAt = time.Now().UTC()
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("save checkpoint (choose another place with --checkpoint): %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// tracker finds the highest row below which every row is done (confirmed or
// rejected), although rows are confirmed out of order across channels. It
// holds only the rows done ahead of that mark, which the publishing window
// bounds.
type tracker struct {
	mu     sync.Mutex
	row    int64           // every row <= row is done
	offset int64           // where row+1 starts
	ahead  map[int64]int64 // done rows above row -> their end offset
}

func newTracker(start, offset int64) *tracker {
	return &tracker{row: start, offset: offset, ahead: map[int64]int64{}}
}

// done marks row, which ends at end, as done.
func (t *tracker) done(row, end int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if row <= t.row {
		return
	}
	t.ahead[row] = end
	for {
		e, ok := t.ahead[t.row+1]
		if !ok {
			return
		}
		delete(t.ahead, t.row+1)
		t.row++
		t.offset = e
	}
}

func (t *tracker) mark() (row, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.row, t.offset
}
