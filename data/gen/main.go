// Command gen writes reproducible customer CSV files for demos, benchmarks and
// chaos runs, and counts what an existing file should import to.
//
//	go run ./data/gen --rows 1000000 --dups 0.02 --invalid 0.01 --out data/customers_1m.csv
//	go run ./data/gen --count data/customers_sample.csv
//
// Both print a JSON summary on stdout: rows, invalid rows, duplicate rows
// (same email up to case and surrounding spaces) and unique_emails, the
// number of customers an import of the file ends with.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/custimport/custimport/libs/cli"
)

func main() {
	cli.Main("gen", func(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
		return run(ctx, args, stdout, stderr)
	})
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg GenConfig
	var out, count string
	fs.Int64Var(&cfg.Rows, "rows", 1000, "number of data rows")
	fs.Float64Var(&cfg.Dups, "dups", 0.02, "share of rows repeating an earlier email (other case, spaces)")
	fs.Float64Var(&cfg.Invalid, "invalid", 0.01, "share of rows with an invalid email")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed: the same flags write the same bytes")
	fs.StringVar(&out, "out", "-", "output file; - for stdout (the summary then goes to stderr)")
	fs.StringVar(&count, "count", "", "instead of generating, count the rows of this CSV file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if count != "" {
		s, err := countFile(count)
		if err != nil {
			return err
		}
		return writeSummary(stdout, s)
	}

	if out == "-" {
		s, err := Generate(stdout, cfg)
		if err != nil {
			return err
		}
		return writeSummary(stderr, s)
	}
	s, err := generateFile(out, cfg)
	if err != nil {
		return err
	}
	return writeSummary(stdout, s)
}

// generateFile writes to a temporary file renamed into place, so an
// interrupted run never leaves a truncated file under the final name.
func generateFile(path string, cfg GenConfig) (Summary, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return Summary{}, fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	s, err := Generate(f, cfg)
	if err != nil {
		_ = f.Close()
		return s, fmt.Errorf("generate %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return s, fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return s, fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return s, fmt.Errorf("rename into %s: %w", path, err)
	}
	return s, nil
}

func countFile(path string) (Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Summary{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	s, err := Count(f)
	if err != nil {
		return s, fmt.Errorf("count %s: %w", path, err)
	}
	return s, nil
}

func writeSummary(w io.Writer, s Summary) error {
	if err := json.NewEncoder(w).Encode(s); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}
