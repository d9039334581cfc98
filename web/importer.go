package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/importer"
)

// runImporter runs imports with the producer's own code (importer.Run),
// publishing with the service's topology and tagging every message with the
// import's id.
func runImporter(cfg Config, logger *slog.Logger) importFunc {
	return func(ctx context.Context, job importJob, onProgress func(progress)) (progress, error) {
		delim, _ := job.Options.delimiter() // validated at upload
		size := int64(-1)
		if st, err := os.Stat(job.File); err == nil {
			size = st.Size()
		}
		counts := resumedCounts(job)
		started := false
		var last progress
		sum, err := importer.Run(ctx, importer.Config{
			File: job.File, Source: job.FileName, ImportID: job.ID,
			CSV: csvsource.Config{
				Header: job.Options.Header, Columns: job.Options.Columns, Delimiter: delim, Encoding: job.Options.Encoding,
			},
			Parallel: cfg.Parallel, Window: cfg.Window,
			Rejects: job.Rejects, Checkpoint: job.Checkpoint, Resume: job.Resume,
			AMQPURL: cfg.AMQPURL, Topology: cfg.topology(),
			PublishRetries: 5,
			ProgressEvery:  cfg.ProgressEvery,
			OnProgress: func(p importer.Progress) {
				started = true
				last = counts(p.Rows, p.Published, p.Rejected, offset(size, p.Total)+p.Bytes)
				onProgress(last)
			},
			AppID:  "web",
			Logger: logger.With("import_id", job.ID),
		})
		final := last
		if sum != nil {
			final = counts(sum.Rows, sum.Published, sum.Rejected, last.BytesRead)
			if sum.Complete {
				final.BytesRead = max(size, 0)
			}
		}
		if err != nil && !started {
			err = classifyEarly(err, job)
		}
		return final, err
	}
}

// offset is where a run started reading: the file's size less what was
// left to read.
func offset(size, left int64) int64 {
	if size < 0 || left < 0 {
		return 0
	}
	return size - left
}

// resumedCounts returns how a run's counts become the import's: as they are
// for a first run. A run resumed from a checkpoint at row n starts from n
// rows done (published or rejected, n in all, the rejected as recorded
// before) and reads the rows after it again.
func resumedCounts(job importJob) func(rows, published, rejected, bytes int64) progress {
	var from, baseRej int64
	if job.Resume {
		if cp, ok, err := importer.LoadCheckpoint(job.Checkpoint); err == nil && ok {
			from = cp.Row
		}
		baseRej = min(job.Recorded.Rejected, from)
	}
	basePub := from - baseRej
	return func(rows, published, rejected, bytes int64) progress {
		return progress{Rows: from + rows, Published: basePub + published, Rejected: baseRej + rejected, BytesRead: bytes}
	}
}

// classifyEarly tells why an import ended before publishing anything: the
// file (errNotImportable: 422), the broker (errBrokerDown: 503), or
// anything else (500).
func classifyEarly(err error, job importJob) error {
	_, amqpErr := errors.AsType[*amqp.Error](err)
	_, netErr := errors.AsType[*net.OpError](err)
	switch {
	case errors.Is(err, csvsource.ErrNoEmailColumn), errors.Is(err, csvsource.ErrRecordTooLong), errors.Is(err, csvsource.ErrInvalidUTF8):
		// The client knows the file by its name, not by the upload folder's path.
		return fmt.Errorf("%w: %s", errNotImportable, strings.ReplaceAll(err.Error(), job.File, job.FileName))
	case amqpErr, netErr:
		return fmt.Errorf("%w: %w", errBrokerDown, err)
	}
	return err
}
