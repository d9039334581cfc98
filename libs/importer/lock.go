package importer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrLocked means another process is importing with the same checkpoint
// (the same file, unless told otherwise): two runs would interleave their
// rejects reports and overwrite each other's checkpoint.
var ErrLocked = errors.New("another import holds the checkpoint's lock")

// lock is an exclusive flock(2) on <checkpoint>.lock, which holds the pid of
// its owner so that a second run can name it. The kernel drops the lock when
// its process ends, however it ends, so the lock of a dead process never
// blocks anyone: its file is only taken over.
type lock struct {
	path string
	f    *os.File
}

func acquireLock(path string, logger *slog.Logger) (*lock, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) //nolint:gosec // the path is the operator's choice
		if err != nil {
			return nil, fmt.Errorf("open lock (choose another place with --checkpoint): %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { //nolint:gosec // a file descriptor fits in an int
			owner := readOwner(f)
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s is held by %s: wait for it to end, or give this run a --checkpoint and --rejects of its own", ErrLocked, path, owner)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The previous owner may have removed the file between our open and
		// our lock: then we hold a lock on a file nobody else will open.
		if same, err := isSameFile(f, path); err != nil || !same {
			_ = f.Close()
			if err != nil {
				return nil, err
			}
			continue
		}
		if owner := readOwner(f); owner != "" {
			logger.Warn("taking over the lock of an import that is no longer running", "lock", path, "was", owner)
		}
		host, _ := os.Hostname()
		text := fmt.Sprintf("pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
		if err := f.Truncate(0); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write lock %s: %w", path, err)
		}
		if _, err := f.WriteAt([]byte(text), 0); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write lock %s: %w", path, err)
		}
		return &lock{path: path, f: f}, nil
	}
}

// readOwner is what the lock's file says of its owner ("pid 123 on host
// since ..."), or "" for an empty file.
func readOwner(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	s := strings.TrimSpace(string(b[:n]))
	if s == "" {
		return ""
	}
	if _, err := strconv.Atoi(s); err == nil {
		return "pid " + s
	}
	return s
}

func isSameFile(f *os.File, path string) (bool, error) {
	held, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	now, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	return os.SameFile(held, now), nil
}

// release removes the lock's file, then unlocks it (closing the file drops
// the lock), in that order so that nobody locks a file about to go.
func (l *lock) release() {
	_ = os.Remove(l.path)
	_ = l.f.Close()
}
