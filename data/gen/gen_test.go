package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestGenerateCountsMatchCount(t *testing.T) {
	tests := []struct {
		name string
		cfg  GenConfig
		want Summary
	}{
		{
			name: "sample",
			cfg:  GenConfig{Rows: 200, Dups: 0.02, Invalid: 0.015, Seed: 1},
			want: Summary{Rows: 200, Invalid: 3, Duplicates: 4, UniqueEmails: 193},
		},
		{
			name: "clean",
			cfg:  GenConfig{Rows: 50, Seed: 7},
			want: Summary{Rows: 50, UniqueEmails: 50},
		},
		{
			name: "empty",
			cfg:  GenConfig{Rows: 0},
			want: Summary{},
		},
		{
			name: "heavy",
			cfg:  GenConfig{Rows: 5000, Dups: 0.3, Invalid: 0.2, Seed: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			got, err := Generate(&buf, tt.cfg)
			require.NoError(t, err)
			if tt.want != (Summary{}) || tt.cfg.Rows == 0 {
				require.Equal(t, tt.want, got)
			}
			counted, err := Count(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err)
			require.Equal(t, got, counted, "the generator's own summary must agree with a parse of its output")
		})
	}
}

func TestGenerateIsReproducible(t *testing.T) {
	cfg := GenConfig{Rows: 3000, Dups: 0.05, Invalid: 0.01, Seed: 42}
	var a, b bytes.Buffer
	_, err := Generate(&a, cfg)
	require.NoError(t, err)
	_, err = Generate(&b, cfg)
	require.NoError(t, err)
	require.Equal(t, a.Bytes(), b.Bytes())

	cfg.Seed++
	var c bytes.Buffer
	_, err = Generate(&c, cfg)
	require.NoError(t, err)
	require.NotEqual(t, a.Bytes(), c.Bytes())
}

func TestGenerateQuirks(t *testing.T) {
	var buf bytes.Buffer
	_, err := Generate(&buf, GenConfig{Rows: 200, Dups: 0.02, Invalid: 0.015, Seed: 1})
	require.NoError(t, err)
	require.True(t, utf8.Valid(buf.Bytes()))

	records, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 201)
	require.Equal(t, Header, records[0])

	var comma, newline, nonASCII, invalid int
	emails := map[string]int{}
	for _, rec := range records[1:] {
		require.Len(t, rec, len(Header))
		if strings.Contains(rec[5], ",") {
			comma++
		}
		if strings.Contains(rec[5], "\n") {
			newline++
		}
		if !isASCII(rec[1] + rec[2]) {
			nonASCII++
		}
		switch rec[3] {
		case "", "not-an-email", "a@b@c":
			invalid++
		}
		emails[strings.ToLower(strings.TrimSpace(rec[3]))]++
	}
	require.Equal(t, 1, comma)
	require.Equal(t, 1, newline)
	require.Equal(t, 1, nonASCII)
	require.Equal(t, 3, invalid)
	var dupEmails int
	for _, n := range emails {
		if n > 1 {
			dupEmails++
		}
	}
	require.Positive(t, dupEmails)
}

func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "c.csv")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--rows", "100", "--dups", "0.02", "--invalid", "0.01", "--out", out}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	var gen Summary
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &gen))
	require.Equal(t, int64(100), gen.Rows)

	stdout.Reset()
	require.NoError(t, run(t.Context(), []string{"--count", out}, &stdout, &stderr))
	var counted Summary
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &counted))
	require.Equal(t, gen, counted)

	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")

	require.Error(t, run(t.Context(), []string{"--rows", "-1"}, io.Discard, io.Discard))
	require.Error(t, run(t.Context(), []string{"--dups", "2"}, io.Discard, io.Discard))
}

func BenchmarkGenerate(b *testing.B) {
	cfg := GenConfig{Rows: 10000, Dups: 0.02, Invalid: 0.01, Seed: 1}
	for b.Loop() {
		if _, err := Generate(io.Discard, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
