package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// importJob is one import for an importFunc to run.
type importJob struct {
	ID, FileName              string
	File, Rejects, Checkpoint string
	Options                   importOptions
	// Resume continues from Checkpoint (an import taken over after a
	// restart); Recorded are the counts written before.
	Resume   bool
	Recorded progress
}

// importFunc runs one import to its end (importer.Run, through
// runImporter). It calls onProgress from one goroutine, first once the file
// was found importable (its layout read) and before publishing, then as it
// goes; it returns the final counts. Counts are the whole file's, those of
// the run before a resume included.
type importFunc func(ctx context.Context, job importJob, onProgress func(progress)) (progress, error)

// runner runs the imports of this instance in the background, each in a
// goroutine it owns, and writes their progress to Postgres, which is where
// every instance reads it from.
type runner struct {
	cfg    Config
	logger *slog.Logger
	store  *store
	run    importFunc

	ctx    context.Context // ends the imports when cancelled (shutdown)
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	active map[string]bool // imports uploading or running here
}

func newRunner(cfg Config, logger *slog.Logger, st *store, run importFunc) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &runner{cfg: cfg, logger: logger, store: st, run: run, ctx: ctx, cancel: cancel, active: map[string]bool{}}
}

func (r *runner) paths(id string) importJob {
	base := filepath.Join(r.cfg.UploadDir, id)
	return importJob{ID: id, File: base + ".csv", Rejects: base + ".rejects.csv", Checkpoint: base + ".checkpoint"}
}

// hold marks an import as handled here (uploading or running) so that the
// orphan scan leaves it alone; it returns false when it already was.
func (r *runner) hold(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[id] {
		return false
	}
	r.active[id] = true
	return true
}

func (r *runner) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, id)
}

// start runs job in the background. The channel it returns gets nil once
// the import is under way (its file was found importable), or the error
// that ended it before that; the caller holds the import (hold).
func (r *runner) start(job importJob) <-chan error {
	started := make(chan error, 1)
	r.wg.Go(func() {
		defer r.drop(job.ID)
		r.execute(job, started)
	})
	return started
}

// execute runs one import and writes what becomes of it.
func (r *runner) execute(job importJob, started chan<- error) {
	logger := r.logger.With("import_id", job.ID)
	var (
		latest atomic.Pointer[progress]
		once   sync.Once
	)
	signal := func(err error) { once.Do(func() { started <- err }) }
	latest.Store(&job.Recorded)

	// The writer records the latest counts every ProgressEvery: the
	// heartbeat that tells other instances this import is alive.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		t := time.NewTicker(r.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := r.store.recordProgress(r.ctx, job.ID, r.cfg.Name, *latest.Load()); err != nil && r.ctx.Err() == nil {
					logger.Warn("could not record the import's progress; retrying", "error", err)
				}
			}
		}
	})

	final, err := r.run(r.ctx, job, func(p progress) {
		latest.Store(&p)
		signal(nil)
	})
	close(stop)
	writer.Wait()
	// An import that ended before it started answers its upload once its
	// end is written.
	defer signal(err)

	// The end is written even while shutting down, within a bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 10*time.Second)
	defer cancel()
	switch {
	case err == nil:
		logger.Info("import done", "rows", final.Rows, "published", final.Published, "rejected", final.Rejected)
		err = r.store.finishImport(ctx, job.ID, stateDone, final, "")
		_ = os.Remove(job.Checkpoint)
	case r.ctx.Err() != nil:
		// Shutting down: the checkpoint says where to go on; whoever holds
		// the file next (this instance after a restart) resumes it.
		logger.Info("import stopped by shutdown; it resumes from its checkpoint on restart", "rows", final.Rows)
		err = r.store.release(ctx, job.ID, r.cfg.Name, final)
	default:
		logger.Warn("import failed", "error", err)
		err = r.store.finishImport(ctx, job.ID, stateFailed, final, err.Error())
	}
	if err != nil {
		logger.Error("could not record the end of the import", "error", err)
	}
}

// adopt takes over the imports left by an instance that stopped, when
// their file is in this instance's upload folder: an interrupted upload is
// marked failed, a publishing import resumes from its checkpoint. It runs at
// start and then every StaleAfter/2 until ctx ends.
func (r *runner) adopt(ctx context.Context) {
	for {
		if err := r.adoptOnce(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("could not look for imports to take over", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.StaleAfter / 2):
		}
	}
}

func (r *runner) adoptOnce(ctx context.Context) error {
	orphans, err := r.store.orphans(ctx, r.cfg.Name, r.cfg.StaleAfter)
	if err != nil {
		return err
	}
	for _, imp := range orphans {
		job := r.paths(imp.ID)
		if _, err := os.Stat(job.File); err != nil {
			continue // another instance's upload folder holds it
		}
		if !r.hold(imp.ID) {
			continue // running here
		}
		ok, err := r.store.claim(ctx, imp.ID, r.cfg.Name, r.cfg.StaleAfter)
		if err != nil || !ok {
			r.drop(imp.ID)
			if err != nil {
				return err
			}
			continue
		}
		if imp.State == stateUploading {
			r.drop(imp.ID)
			r.logger.Warn("an upload was cut off by a restart; marking its import failed", "import_id", imp.ID)
			_ = os.Remove(job.File)
			if err := r.store.finishImport(ctx, imp.ID, stateFailed, progress{}, "the upload was cut off (the service stopped): upload the file again"); err != nil {
				return err
			}
			continue
		}
		r.logger.Info("taking over an interrupted import; resuming from its checkpoint", "import_id", imp.ID, "file", imp.FileName)
		job.Options, job.FileName, job.Resume = imp.Options, imp.FileName, true
		job.Recorded = progress{Rows: imp.Rows, Published: imp.Published, Rejected: imp.Rejected, BytesRead: imp.BytesRead}
		r.start(job)
	}
	return nil
}

// stop ends the running imports (each saves its checkpoint and is released
// for a restart) and waits for them.
func (r *runner) stop() {
	r.cancel()
	r.wg.Wait()
}
