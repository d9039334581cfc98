package csvsource

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/testenv"
)

func TestSeedFiles(t *testing.T) {
	t.Parallel()
	// Real exports shared by the project's tests; see their README.md.
	seedsDir := testenv.SeedsDir(t)
	cases := []struct {
		file    string
		rows    int64
		header  bool
		columns []string
		first   Mapped
		noEmail int // rows without an email, as the seeds' README says
	}{
		{
			file: "mock_data_1000_header.csv", rows: 1002, header: true,
			columns: []string{"id", "first_name", "last_name", "email", "phone"},
			first:   Mapped{FirstName: "Hadleigh", LastName: "Mahedy", Email: "hmahedy0@diigo.com", Phone: "840 586 9744", Attributes: map[string]string{"id": "1"}},
		},
		{
			file: "mock_bad_data_noheader.csv", rows: 5, noEmail: 1,
			columns: []string{"col1", "col2", "col3", "email", "col5"},
			first:   Mapped{Email: "rzuenelli0@altervista.org", Attributes: map[string]string{"col1": "500l", "col2": "Rosabel", "col3": "Zuenelli", "col5": "+63 279 104 0928"}},
		},
		{
			file: "name_email_10000_noheader.csv", rows: 10000,
			columns: []string{"name", "email"},
		},
		{
			file: "name_email_11273_dups_noheader.csv", rows: 11273,
			columns: []string{"name", "email"},
		},
		{
			file: "name_email_example_noheader.csv", rows: 7,
			columns: []string{"name", "email"},
			first:   Mapped{Name: "Kathy Hunter", Email: "abc.def0@bing.com"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(filepath.Join(seedsDir, tc.file))
			require.NoError(t, err)
			t.Cleanup(func() { _ = f.Close() })
			r, err := NewReader(f, Config{})
			require.NoError(t, err)
			l := r.Layout()
			require.Equal(t, ',', l.Delimiter)
			require.Equal(t, tc.header, l.HasHeader)
			require.Equal(t, tc.columns, l.Columns)
			require.Equal(t, !tc.header, l.ColumnsFrom == ColumnsFromGuess)
			require.Equal(t, !tc.header, l.Guessed(), "a header of known names needs no guess")

			recs, errs := readAll(t, r)
			require.Len(t, recs, int(tc.rows))
			noEmail := 0
			for i, err := range errs {
				require.NoError(t, err, "row %d", i+1)
				if r.Map(recs[i]).Email == "" {
					noEmail++
				}
			}
			require.Equal(t, tc.noEmail, noEmail)
			if tc.first.Email != "" {
				require.Equal(t, tc.first, r.Map(recs[0]))
			}
			st, err := f.Stat()
			require.NoError(t, err)
			require.Equal(t, st.Size(), recs[len(recs)-1].End, "the last record ends the file")
		})
	}
}

func TestTestdataFiles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file   string
		layout string
		want   []Mapped
		errs   map[int]error // by 0-based record index
	}{
		{
			file:   "excel_semicolon_cp1252.csv",
			layout: `delimiter ';' (detected), header (detected), columns last_name,first_name,email,phone,comment (from the header), encoding auto`,
			want: []Mapped{
				{LastName: "Müller", FirstName: "Jürgen", Email: "juergen.mueller@example.de", Phone: "+49 30 1234567", Attributes: map[string]string{"comment": "Preis: 12,50 €; bar"}},
				{LastName: "Dupont", FirstName: "Françoise", Email: "f.dupont@example.fr"},
				{LastName: "O’Brien", FirstName: "Seán", Email: "sean@example.ie", Phone: "+353 1 555 0100", Attributes: map[string]string{"comment": "zwei\nZeilen"}},
			},
		},
		{
			file:   "export_bom_crlf.csv",
			layout: `delimiter ',' (detected), header (detected), columns name,email,phone,company (from the header), encoding auto`,
			want: []Mapped{
				{Name: "Lee, Ann", Email: "ann.lee@example.com", Phone: "+1 212 555 0101", Attributes: map[string]string{"company": `ACME "West"`}},
				{Name: "José Álvarez", Email: "jose@example.es"},
				{Name: "Zoë Smith", Email: "zoe@example.co.uk", Phone: "+44 20 7946 0958", Attributes: map[string]string{"company": "Multi\nline Ltd"}},
				{},
				{Name: "Cy", Email: "cy@example.com", Attributes: map[string]string{"company": "Last Co"}},
			},
			errs: map[int]error{3: csv.ErrBareQuote},
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			t.Cleanup(func() { _ = f.Close() })
			r, err := NewReader(f, Config{})
			require.NoError(t, err)
			require.Equal(t, tc.layout, r.Layout().String())
			recs, errs := readAll(t, r)
			require.Len(t, recs, len(tc.want))
			for i, want := range tc.want {
				if tc.errs[i] != nil {
					require.ErrorIs(t, errs[i], tc.errs[i])
					continue
				}
				require.NoError(t, errs[i])
				require.Equal(t, want, r.Map(recs[i]), "record %d", i+1)
			}
		})
	}
}

// TestSeedSavedByExcel reads a real export as Excel saves it under "CSV
// (Macintosh)" (CR line ends) and "Unicode Text" (UTF-16 LE with a BOM, tab
// separated, CRLF), and requires the records of the original, with offsets
// that resume in the saved file.
func TestSeedSavedByExcel(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(filepath.Join(testenv.SeedsDir(t), "mock_data_1000_header.csv"))
	require.NoError(t, err)
	want := readMapped(t, orig, Config{})
	require.Len(t, want, 1002)

	lines := strings.Split(strings.TrimRight(string(orig), "\r\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	tabbed := make([]string, len(lines))
	for i, l := range lines {
		require.NotContains(t, l, `"`, "the seed has no quoted fields to convert")
		tabbed[i] = strings.ReplaceAll(l, ",", "\t")
	}
	for _, tc := range []struct {
		name, layout string
		data         []byte
	}{
		{"CSV (Macintosh)", "encoding auto, CR line ends (detected)", []byte(strings.Join(lines, "\r") + "\r")},
		{"Unicode Text", "encoding utf-16le (from its BOM)", []byte(utf16Text(false, "\ufeff"+strings.Join(tabbed, "\r\n")+"\r\n"))},
		{"Unicode Text, big endian", "encoding utf-16be (from its BOM)", []byte(utf16Text(true, "\ufeff"+strings.Join(tabbed, "\r\n")+"\r\n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReader(bytes.NewReader(tc.data), Config{})
			require.NoError(t, err)
			require.True(t, strings.HasSuffix(r.Layout().String(), tc.layout), r.Layout().String())
			recs, errs := readAll(t, r)
			require.Len(t, recs, len(want))
			for i := range recs {
				require.NoError(t, errs[i])
				require.Equal(t, want[i], r.Map(recs[i]), "row %d", i+1)
			}
			require.Equal(t, int64(len(tc.data)), recs[len(recs)-1].End)

			// Resume in the middle of the saved file.
			mid := recs[499].Position()
			r, err = NewReader(bytes.NewReader(tc.data), Config{Start: mid})
			require.NoError(t, err)
			tail, _ := readAll(t, r)
			require.Len(t, tail, len(want)-500)
			require.Equal(t, want[500], r.Map(tail[0]))
			require.Equal(t, int64(501), tail[0].Row)
		})
	}
}

func readMapped(t *testing.T, data []byte, cfg Config) []Mapped {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), cfg)
	require.NoError(t, err)
	recs, errs := readAll(t, r)
	out := make([]Mapped, len(recs))
	for i := range recs {
		require.NoError(t, errs[i])
		out[i] = r.Map(recs[i])
	}
	return out
}
