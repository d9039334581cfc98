package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
)

// genSummary is data/gen's JSON summary.
type genSummary struct {
	Rows         int64 `json:"rows"`
	Invalid      int64 `json:"invalid"`
	Duplicates   int64 `json:"duplicates"`
	UniqueEmails int64 `json:"unique_emails"`
}

// generate writes the main file with data/gen and returns its --count.
func (h *harness) generate(ctx context.Context, path string) (genSummary, error) {
	gen := filepath.Join(h.bin, "gen")
	if out, err := exec.CommandContext(ctx, gen, "--rows", strconv.Itoa(h.cfg.Rows), "--dups", "0.02", "--invalid", "0.01",
		"--seed", strconv.Itoa(h.cfg.Seed), "--out", path).CombinedOutput(); err != nil {
		return genSummary{}, fmt.Errorf("data/gen: %w\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, gen, "--count", path).Output()
	if err != nil {
		return genSummary{}, fmt.Errorf("data/gen --count: %w", err)
	}
	var s genSummary
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("data/gen --count: decode %q: %w", out, err)
	}
	return s, nil
}

// writeRejectFile writes a few customers whose domain the CRM refuses
// (422): they must end rejected in Postgres, dead-lettered, and never
// created. data/gen spreads its rows evenly over eight domains, none of
// which is rare enough to refuse, hence a file of their own.
func writeRejectFile(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"id", "first_name", "last_name", "email", "phone", "company"})
	for i := 1; i <= n; i++ {
		email := fmt.Sprintf("refused.%d@%s", i, rejectDomain)
		if i%3 == 0 {
			email = fmt.Sprintf("  Refused.%d@CRM-Refuses.example ", i) // normalised like any other
		}
		_ = w.Write([]string{strconv.Itoa(i), "Rita", "Refused", email, "+1-555-000-0000", "Nowhere"})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// fileRows is what a CSV should import to, read the way the producer reads
// it (csvsource with the default layout detection, customer validation).
type fileRows struct {
	Rows    int64
	Emails  map[string]int64 // valid normalised email -> first row holding it
	Invalid map[int64]string // row -> why it is rejected
}

func readExpected(path string) (fileRows, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileRows{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	src, err := csvsource.NewReader(f, csvsource.Config{})
	if err != nil {
		return fileRows{}, fmt.Errorf("read %s: %w", path, err)
	}
	out := fileRows{Emails: map[string]int64{}, Invalid: map[int64]string{}}
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if recErr, ok := errors.AsType[*csvsource.RecordError](err); ok {
			out.Rows++
			out.Invalid[recErr.Row] = recErr.Err.Error()
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read %s: %w", path, err)
		}
		out.Rows++
		m := src.Map(rec)
		c := customer.Customer{
			Email: m.Email, Name: m.Name, FirstName: m.FirstName, LastName: m.LastName, Phone: m.Phone, Attributes: m.Attributes,
		}.Normalize()
		if err := c.Validate(); err != nil {
			out.Invalid[rec.Row] = err.Error()
			continue
		}
		if _, seen := out.Emails[c.Email]; !seen {
			out.Emails[c.Email] = rec.Row
		}
	}
}

// readRejectsReport returns the row numbers in a producer's rejects report
// (appended to by each --resume, so a row may appear more than once).
// A line the report cannot parse is returned as damage: a crash mid-write.
func readRejectsReport(path string) (map[int64]int, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open rejects report: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	rows := map[int64]int{}
	var damage []string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, damage, nil
		}
		if err != nil {
			damage = append(damage, err.Error())
			continue
		}
		if len(rec) < 2 || rec[0] == "reason" {
			continue
		}
		n, err := strconv.ParseInt(rec[1], 10, 64)
		if err != nil {
			damage = append(damage, fmt.Sprintf("row column %q", rec[1]))
			continue
		}
		rows[n]++
	}
}
