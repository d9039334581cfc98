package csvsource

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/stretchr/testify/require"
)

// want is one expected outcome of Next: fields, or a RecordError wrapping err.
type want struct {
	fields []string
	err    error
}

func rec(fields ...string) want { return want{fields: fields} }
func bad(err error) want        { return want{err: err} }

type readCase struct {
	name    string
	input   string
	cfg     Config
	delim   rune
	header  bool
	columns []string
	want    []want
}

var readCases = []readCase{
	{
		name:  "header",
		input: "name,email\nAnn,ann@x.com\nBob,bob@x.com\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("Bob", "bob@x.com")},
	},
	{
		name:  "bom and crlf",
		input: "\ufeffEmail,Name\r\nann@x.com,Ann\r\nbob@x.com,Bob\r\n",
		delim: ',', header: true, columns: []string{"email", "name"},
		want: []want{rec("ann@x.com", "Ann"), rec("bob@x.com", "Bob")},
	},
	{
		name:  "quoted comma quote and newline",
		input: "name,email\n\"Doe, Jane\",jane@x.com\n\"Say \"\"hi\"\"\",hi@x.com\n\"multi\r\nline\",m@x.com\r\n\"\",\"e@x.com\"\r\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Doe, Jane", "jane@x.com"), rec(`Say "hi"`, "hi@x.com"), rec("multi\nline", "m@x.com"), rec("", "e@x.com")},
	},
	{
		name:  "blank lines",
		input: "\n\r\nname,email\n\nAnn,ann@x.com\r\n\r\n\nBob,bob@x.com\n\n\r\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("Bob", "bob@x.com")},
	},
	{
		name:  "semicolon detected",
		input: "Name;E-Mail;City\nJosé;jose@x.com;\"Paris, FR\"\nAnn;ann@x.com;\n",
		delim: ';', header: true, columns: []string{"name", "email", "city"},
		want: []want{rec("José", "jose@x.com", "Paris, FR"), rec("Ann", "ann@x.com", "")},
	},
	{
		name:  "tab detected",
		input: "first name\tlast name\temail\nAnn\tLee\tann@x.com\n",
		delim: '\t', header: true, columns: []string{"first_name", "last_name", "email"},
		want: []want{rec("Ann", "Lee", "ann@x.com")},
	},
	{
		name:  "detection ignores quoted delimiters",
		input: "\"a;b;c\",x@y.z\n\"d;e\",w@y.z\n",
		delim: ',', columns: []string{"name", "email"},
		want: []want{rec("a;b;c", "x@y.z"), rec("d;e", "w@y.z")},
	},
	{
		name:  "configured delimiter",
		input: "name|email\nAnn|ann@x.com\n",
		cfg:   Config{Delimiter: '|'},
		delim: '|', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com")},
	},
	{
		name:  "windows-1252 decoded per field",
		input: "nom;email\nJos\xe9;jose@x.com\n\x80uro;e@x.com\nJosé;utf8@x.com\n",
		delim: ';', header: true, columns: []string{"nom", "email"},
		want: []want{rec("José", "jose@x.com"), rec("€uro", "e@x.com"), rec("José", "utf8@x.com")},
	},
	{
		name:  "latin1 forced",
		input: "name,email\nJos\xc3\xa9,j@x.com\nJos\xe9,k@x.com\n",
		cfg:   Config{Encoding: "latin1"},
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("JosÃ©", "j@x.com"), rec("José", "k@x.com")},
	},
	{
		name:  "utf-8 strict",
		input: "name,email\nJos\xe9,j@x.com\nAnn,a@x.com\n",
		cfg:   Config{Encoding: "utf8"},
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(ErrInvalidUTF8), rec("Ann", "a@x.com")},
	},
	{
		name:  "header no keeps first record",
		input: "name,email\nAnn,a@x.com\n",
		cfg:   Config{Header: HeaderNo, Columns: []string{"name", "email"}},
		delim: ',', columns: []string{"name", "email"},
		want: []want{rec("name", "email"), rec("Ann", "a@x.com")},
	},
	{
		name:  "header yes",
		input: "Full Name,E-mail,Notes\nAnn,a@x.com,vip\n",
		cfg:   Config{Header: HeaderYes},
		delim: ',', header: true, columns: []string{"name", "email", "notes"},
		want: []want{rec("Ann", "a@x.com", "vip")},
	},
	{
		name:  "auto without header guesses",
		input: "Ann,ann@x.com\nBob,bob@x.com\n",
		delim: ',', columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("Bob", "bob@x.com")},
	},
	{
		name:  "auto guesses five columns generically",
		input: "500l,Rosabel,Zuenelli,rz@alt.org,+63 279\n5002,Con,Ben,cb@icq.com,+62 989\n",
		delim: ',', columns: []string{"col1", "col2", "col3", "email", "col5"},
		want: []want{rec("500l", "Rosabel", "Zuenelli", "rz@alt.org", "+63 279"), rec("5002", "Con", "Ben", "cb@icq.com", "+62 989")},
	},
	{
		name:  "columns override header",
		input: "a,b\nann@x.com,Ann\n",
		cfg:   Config{Header: HeaderYes, Columns: []string{"email", "name"}},
		delim: ',', header: true, columns: []string{"email", "name"},
		want: []want{rec("ann@x.com", "Ann")},
	},
	{
		name:  "columns with aliases",
		input: "a@x.com,Ann,vip\n",
		cfg:   Config{Header: HeaderNo, Columns: []string{"Mail", "Full Name", "Notes"}},
		delim: ',', columns: []string{"email", "name", "notes"},
		want: []want{rec("a@x.com", "Ann", "vip")},
	},
	{
		name:  "extra and missing columns",
		input: "name,email\nAnn,a@x.com,extra,more\nBob\n,\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "a@x.com", "extra", "more"), rec("Bob"), rec("", "")},
	},
	{
		name:  "bare quote is a record error",
		input: "name,email\nA\"nn,a@x.com\nBob,b@x.com\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(csv.ErrBareQuote), rec("Bob", "b@x.com")},
	},
	{
		name:  "text after closing quote is a record error",
		input: "name,email\n\"Ann\"x,a@x.com\r\nBob,b@x.com\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(csv.ErrQuote), rec("Bob", "b@x.com")},
	},
	{
		name:  "CR after closing quote",
		input: "name,email\n\"Ann\"\r,a@x.com\nBob,\"b@x.com\"\r\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(csv.ErrQuote), rec("Bob", "b@x.com")},
	},
	{
		name:  "unterminated quote runs to the end",
		input: "name,email\nBob,b@x.com\n\"Ann,a@x.com\nCy,c@x.com\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Bob", "b@x.com"), bad(csv.ErrQuote)},
	},
	{
		name:  "stray quote runs to the next quote",
		input: "name,email\n\"Ann,a@x.com\nCy,c\"@x.com\nDee,d@x.com\n",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(csv.ErrQuote), rec("Dee", "d@x.com")},
	},
	{
		name:  "long record",
		input: "name,email\nAnn,a@x.com\n" + strings.Repeat("x", 100) + ",b@x.com\nCy,c@x.com",
		cfg:   Config{MaxRecordBytes: 40},
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "a@x.com"), bad(ErrRecordTooLong), rec("Cy", "c@x.com")},
	},
	{
		name:  "long quoted record over many lines",
		input: "name,email\n\"" + strings.Repeat("line\r\n", 20) + "\",q@x.com\nCy,c@x.com\n",
		cfg:   Config{MaxRecordBytes: 40},
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{bad(ErrRecordTooLong), rec("Cy", "c@x.com")},
	},
	{
		name:  "last line without newline ends in CR",
		input: "name,email\nAnn,a@x.com\r",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "a@x.com")},
	},
	{
		name:  "empty input",
		input: "",
		delim: ',',
	},
	{
		name:  "only blank lines",
		input: "\r\n\n\r",
		delim: ',',
	},
	{
		name:  "header only",
		input: "\ufeffname,email",
		delim: ',', header: true, columns: []string{"name", "email"},
	},
	{
		name:  "cr line ends (Excel CSV for Macintosh)",
		input: "name,email\rAnn,ann@x.com\r\r\"Bob\rJr\",bob@x.com\rCy,cy@x.com",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("Bob\nJr", "bob@x.com"), rec("Cy", "cy@x.com")},
	},
	{
		name:  "utf-16le with BOM, tab-separated (Excel Unicode Text)",
		input: utf16Text(false, "\ufeffname\temail\r\nJosé\tjose@x.com\r\n\"Zoë \U0001F600\"\tzoe@x.com\r\n"),
		delim: '\t', header: true, columns: []string{"name", "email"},
		want: []want{rec("José", "jose@x.com"), rec("Zoë \U0001F600", "zoe@x.com")},
	},
	{
		name:  "utf-16be with BOM, no line end at the end",
		input: utf16Text(true, "\ufeffname\temail\nAnn\tann@x.com\nBob\tbob@x.com"),
		delim: '\t', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("Bob", "bob@x.com")},
	},
	{
		name:  "utf-16le with CR line ends and a broken surrogate",
		input: utf16Text(false, "\ufeffname,email\rAnn,ann@x.com\r") + "\x00\xd8,\x00a\x00@\x00x\x00\r\x00",
		delim: ',', header: true, columns: []string{"name", "email"},
		want: []want{rec("Ann", "ann@x.com"), rec("\ufffd", "a@x")},
	},
	{
		name:  "duplicate header names",
		input: "email,mail,notes,notes,col5\na@x.com,b@x.com,n1,n2,c\n",
		delim: ',', header: true, columns: []string{"email", "mail", "notes", "col4", "col5"},
		want: []want{rec("a@x.com", "b@x.com", "n1", "n2", "c")},
	},
}

// readAll reads every record, returning each outcome of Next in order.
func readAll(t *testing.T, r *Reader) ([]Record, []error) {
	t.Helper()
	var recs []Record
	var errs []error
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs, errs
		}
		if err != nil {
			_, ok := errors.AsType[*RecordError](err)
			require.True(t, ok, "not a RecordError: %v", err)
		}
		recs = append(recs, rec)
		errs = append(errs, err)
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	for _, tc := range readCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReader(strings.NewReader(tc.input), tc.cfg)
			require.NoError(t, err)
			l := r.Layout()
			require.Equal(t, tc.delim, l.Delimiter, "delimiter")
			require.Equal(t, tc.header, l.HasHeader, "header")
			require.Equal(t, tc.columns, l.Columns, "columns")

			recs, errs := readAll(t, r)
			require.Len(t, recs, len(tc.want))
			prevEnd := int64(0)
			for i, w := range tc.want {
				if w.err != nil {
					require.ErrorIs(t, errs[i], w.err, "record %d", i+1)
					recErr, _ := errors.AsType[*RecordError](errs[i])
					require.Equal(t, int64(i+1), recErr.Row)
					require.GreaterOrEqual(t, recErr.Offset, prevEnd)
					prevEnd = recErr.End
					continue
				}
				require.NoError(t, errs[i], "record %d", i+1)
				got := recs[i]
				require.Equal(t, w.fields, got.Fields, "record %d", i+1)
				require.Equal(t, int64(i+1), got.Row)
				require.GreaterOrEqual(t, got.Offset, prevEnd)
				require.Greater(t, got.End, got.Offset)
				require.LessOrEqual(t, got.End, int64(len(tc.input)))
				prevEnd = got.End

				// The bytes at Offset..End are the record: parsed alone they give the same fields.
				alone := csv.NewReader(strings.NewReader(asRead(l, tc.input[got.Offset:got.End])))
				alone.Comma = l.Delimiter
				fields, err := alone.Read()
				require.NoError(t, err)
				require.NoError(t, decodeFields(fields, l.Encoding))
				require.Equal(t, got.Fields, fields)
				require.Equal(t, 1+strings.Count(asRead(l, tc.input[:got.Offset]), "\n"), got.Line)
			}
		})
	}
}

// nonSeeker hides a reader's Seek method, as a pipe would.
type nonSeeker struct{ io.Reader }

func TestResumeGivesTheSameRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range readCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReader(strings.NewReader(tc.input), tc.cfg)
			require.NoError(t, err)
			full, fullErrs := readAll(t, r)

			positions := []Position{}
			for i := range full {
				if recErr, ok := errors.AsType[*RecordError](fullErrs[i]); ok {
					positions = append(positions, recErr.Position())
				} else {
					positions = append(positions, full[i].Position())
				}
			}
			for k, p := range positions {
				for _, seekable := range []bool{true, false} {
					if !seekable && r.Layout().Transcoded != "" {
						continue // resumed from files only
					}
					var src io.Reader = strings.NewReader(tc.input)
					if !seekable {
						src = nonSeeker{src}
					}
					cfg := tc.cfg
					cfg.Start = p
					r, err := NewReader(src, cfg)
					require.NoError(t, err, "resume at %+v", p)
					tail, tailErrs := readAll(t, r)
					require.Len(t, tail, len(full)-k-1, "resume at %+v", p)
					for i := range tail {
						j := k + 1 + i
						if fullErrs[j] != nil {
							want, _ := errors.AsType[*RecordError](fullErrs[j])
							got, ok := errors.AsType[*RecordError](tailErrs[i])
							require.True(t, ok)
							require.Equal(t, want.Row, got.Row)
							require.Equal(t, want.Offset, got.Offset)
							require.Equal(t, want.End, got.End)
							continue
						}
						require.NoError(t, tailErrs[i])
						want, got := full[j], tail[i]
						if seekable && got.Line == 0 {
							want.Line = 0 // lines before a seek are not counted
						}
						require.Equal(t, want, got, "resume at %+v, seekable %v", p, seekable)
					}
				}
			}
		})
	}
}

func TestOffsetsGiveRecordText(t *testing.T) {
	t.Parallel()
	input := "\ufeffname,email\r\nAnn,ann@x.com\r\n\r\n\"Bob, Jr\",\"b\r\nob@x.com\"\r\nJos\xe9,j@x.com\r\nCy,cy@x.com"
	r, err := NewReader(strings.NewReader(input), Config{})
	require.NoError(t, err)
	recs, errs := readAll(t, r)
	require.Equal(t, []error{nil, nil, nil, nil}, errs)
	var texts []string
	var lines []int
	for _, rec := range recs {
		texts = append(texts, input[rec.Offset:rec.End])
		lines = append(lines, rec.Line)
	}
	require.Equal(t, []string{
		"Ann,ann@x.com\r\n",
		"\"Bob, Jr\",\"b\r\nob@x.com\"\r\n",
		"Jos\xe9,j@x.com\r\n",
		"Cy,cy@x.com",
	}, texts)
	require.Equal(t, []int{2, 4, 6, 7}, lines)
	require.Equal(t, int64(len("\ufeffname,email\r\n")), recs[0].Offset)
	require.Equal(t, int64(len(input)), recs[3].End)
	require.Equal(t, []string{"José", "j@x.com"}, recs[2].Fields)
}

func TestRecordErrorCarriesPosition(t *testing.T) {
	t.Parallel()
	input := "name,email\nAnn,a@x.com\n\"Bob\"x,b@x.com\nCy,c@x.com\n"
	r, err := NewReader(strings.NewReader(input), Config{})
	require.NoError(t, err)
	_, errs := readAll(t, r)
	recErr, ok := errors.AsType[*RecordError](errs[1])
	require.True(t, ok)
	require.Equal(t, int64(2), recErr.Row)
	require.Equal(t, 3, recErr.Line)
	require.Equal(t, "\"Bob\"x,b@x.com\n", input[recErr.Offset:recErr.End])
	pe, ok := errors.AsType[*csv.ParseError](recErr)
	require.True(t, ok)
	require.Equal(t, 3, pe.StartLine, "csv lines are file lines")
	require.ErrorIs(t, recErr, csv.ErrQuote)
	require.Equal(t, "row 2 (line 3, offset 23): parse error on line 3, column 5: extraneous or missing \" in quoted-field", recErr.Error())
}

func TestMap(t *testing.T) {
	t.Parallel()
	input := "id,first_name,last_name,email,phone,notes\n1,Ann,Lee,a@x.com,+1 555,vip,x1,,x3\n2,Bob\n"
	r, err := NewReader(strings.NewReader(input), Config{})
	require.NoError(t, err)
	recs, _ := readAll(t, r)
	require.Equal(t, Mapped{
		FirstName: "Ann", LastName: "Lee", Email: "a@x.com", Phone: "+1 555",
		Attributes: map[string]string{"id": "1", "notes": "vip", "col7": "x1", "col9": "x3"},
	}, r.Map(recs[0]))
	require.Equal(t, Mapped{FirstName: "Bob", Attributes: map[string]string{"id": "2"}}, r.Map(recs[1]))

	require.Equal(t, "a@x.com", r.Value(recs[0], "E-Mail"))
	require.Equal(t, "Lee", r.Value(recs[0], "surname"))
	require.Equal(t, "vip", r.Value(recs[0], "notes"))
	require.Equal(t, "x3", r.Value(recs[0], "col9"))
	require.Empty(t, r.Value(recs[0], "col6"), "col6 is named notes")
	require.Empty(t, r.Value(recs[1], "email"), "missing column")
	require.Empty(t, r.Value(recs[0], "nope"))

	r, err = NewReader(strings.NewReader("Ann,a@x.com\n"), Config{})
	require.NoError(t, err)
	recs, _ = readAll(t, r)
	require.Equal(t, Mapped{Name: "Ann", Email: "a@x.com"}, r.Map(recs[0]), "no attributes, nil map")
}

func TestNewReaderErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		input string
		cfg   Config
		want  string
	}{
		{"bad header mode", "", Config{Header: "maybe"}, `--header: "maybe" is not one of auto, yes, no`},
		{"bad encoding", "", Config{Encoding: "ebcdic"}, `--encoding: "ebcdic"`},
		{"quote delimiter", "", Config{Delimiter: '"'}, `--delimiter: '"' cannot separate fields`},
		{"multibyte delimiter", "", Config{Delimiter: '§'}, `--delimiter: '§' cannot separate fields`},
		{"negative max", "", Config{MaxRecordBytes: -1}, "--max-record-bytes: must be positive"},
		{"negative start", "", Config{Start: Position{Row: -1}}, "--resume: position row -1, offset 0 is negative"},
		{"start row without offset", "", Config{Start: Position{Row: 3}}, "--resume: position row 3 has no byte offset"},
		{"columns duplicate", "", Config{Columns: []string{"name", "email", "Name"}}, `--columns: "name" names columns 1 and 3`},
		{"columns alias duplicate", "", Config{Columns: []string{"mail", "email"}}, `--columns: "email" names columns 1 and 2 ("mail", "email")`},
		{"columns empty name", "", Config{Columns: []string{"name", " ", "email"}}, "--columns: column 2 has no name"},
		{"columns without email", "", Config{Columns: []string{"name", "phone"}}, "--columns: no email column among name,phone"},
		{"header without email", "name,phone\nAnn,555\n", Config{}, "header has no email column (name,phone): name the columns with --columns"},
		{"nothing to guess from", "foo,bar\nAnn,a@x.com\n", Config{}, "guess columns: no value of the first record contains '@'"},
		{"bad header record", "\"name\"x,email\n", Config{Header: HeaderYes}, "read header (line 1): parse error on line 1, column 6"},
		{"bad first record to guess from", "A\"nn,a@x.com\n", Config{}, "guess columns from the first record (line 1)"},
		{"start inside header", "name,email\nAnn,a@x.com\n", Config{Start: Position{Row: 1, Offset: 5}}, "--resume: offset 5 is not after the header or first record (data starts at offset 11)"},
		{"start inside a line", "name,email\nAnn,a@x.com\nBob,b@x.com\n", Config{Start: Position{Row: 1, Offset: 15}}, "--resume: offset 15 does not follow a line end"},
		{"start beyond the end", "name,email\nAnn,a@x.com\n", Config{Start: Position{Row: 1, Offset: 100}}, "--resume: offset 100 is beyond the end of the input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, src := range []io.Reader{strings.NewReader(tc.input), nonSeeker{strings.NewReader(tc.input)}} {
				_, err := NewReader(src, tc.cfg)
				require.ErrorContains(t, err, tc.want)
				require.Equal(t, strings.Contains(tc.name, "email") || tc.name == "nothing to guess from", errors.Is(err, ErrNoEmailColumn), err)
			}
		})
	}
}

func TestLayoutString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		input string
		cfg   Config
		want  string
	}{
		{"Ann;a@x.com\n", Config{}, `delimiter ';' (detected), no header (detected), columns name,email (guessed from the first record), encoding auto`},
		{"id\temail\n", Config{Header: HeaderYes, Encoding: "cp1252"}, `delimiter '\t' (detected), header, columns id,email (from the header), encoding windows-1252`},
		{"a,b\n", Config{Delimiter: ',', Header: HeaderYes, Columns: []string{"email", "name"}}, `delimiter ',', header, columns email,name (from --columns, header names ignored), encoding auto`},
		{"", Config{Delimiter: ','}, `delimiter ',', no header (detected), columns none (empty input), encoding auto`},
	}
	for _, tc := range cases {
		r, err := NewReader(strings.NewReader(tc.input), tc.cfg)
		require.NoError(t, err)
		require.Equal(t, tc.want, r.Layout().String())
	}
	r, err := NewReader(strings.NewReader("a@x.com\n"), Config{Delimiter: ',', Header: HeaderNo, Columns: []string{"email"}})
	require.NoError(t, err)
	require.False(t, r.Layout().Guessed())
}

// A layout warns only where it guessed: not for a header with known names
// and one delimiter, nor with --columns over a first record with an email.
func TestLayoutGuessed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		input   string
		cfg     Config
		guessed bool
	}{
		{"id,first_name,last_name,email,phone,company\n1,Ann,Lee,a@x.com,,\n", Config{}, false},
		{"Ann,a@x.com\n", Config{Columns: []string{"name", "email"}}, false},
		{"Ann,a@x.com\n", Config{Header: HeaderNo, Columns: []string{"name", "email"}}, false},
		{"name,email\nAnn,a@x.com\n", Config{Header: HeaderYes}, false},
		{"Ann,a@x.com\n", Config{}, true},                                                // columns guessed
		{"name;email;notes,more\nAnn;a@x.com;n\n", Config{Header: HeaderYes}, true},      // ';' or ','?
		{"Col A,Col B\nAnn,a@x.com\n", Config{Columns: []string{"name", "email"}}, true}, // a header of unknown names, or data?
	} {
		r, err := NewReader(strings.NewReader(tc.input), tc.cfg)
		require.NoError(t, err, tc.input)
		require.Equal(t, tc.guessed, r.Layout().Guessed(), "%q %+v: %s", tc.input, tc.cfg, r.Layout())
	}
}

func TestDetectDelimiter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		input string
		want  byte
	}{
		{"a,b,c\n", ','},
		{"a;b;c\n", ';'},
		{"a\tb\tc\n", '\t'},
		{"\r\n\n  \na;b\n", ';'},
		{"\"x,y,z\";b;c\n", ';'},
		{"\"multi\nline, with, commas\"\tb\n", '\t'},
		{"a;b,c\n", ','},
		{"single\n", ','},
		{"", ','},
		{"a;b\nc,d,e,f\n", ';'},
	}
	for _, tc := range cases {
		got, ambiguous := detectDelimiter([]byte(tc.input))
		require.Equal(t, string(tc.want), string(got), "%q", tc.input)
		require.Equal(t, tc.input == "a;b,c\n", ambiguous, "%q", tc.input)
	}
}

// endless is an input that never ends its first record: one quoted field of
// size bytes.
type endless struct{ left int }

func (e *endless) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	n := min(len(p), e.left)
	for i := range n {
		p[i] = 'x'
		if i%100 == 99 {
			p[i] = '\n'
		}
	}
	if e.left == 64<<20 {
		p[0] = '"'
	}
	e.left -= n
	return n, nil
}

func TestLongRecordBoundedMemory(t *testing.T) {
	// Not parallel: it measures the heap.
	src := io.MultiReader(strings.NewReader("name,email\n"), &endless{left: 64 << 20})
	before := heapAllocated()
	r, err := NewReader(src, Config{})
	require.NoError(t, err)
	_, err = r.Next()
	allocated := heapAllocated() - before
	require.ErrorIs(t, err, ErrRecordTooLong)
	recErr, _ := errors.AsType[*RecordError](err)
	require.Equal(t, int64(11+64<<20), recErr.End)
	_, err = r.Next()
	require.ErrorIs(t, err, io.EOF)
	require.Less(t, allocated, int64(8<<20), "a 64 MiB record must not be buffered")
}

func TestReadErrorIsFinal(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk gone")
	src := io.MultiReader(strings.NewReader("name,email\nAnn,a@x.com\n"), iotestErrReader{boom})
	// A configured delimiter: detection would meet the error while peeking.
	r, err := NewReader(src, Config{Delimiter: ','})
	require.NoError(t, err)
	rec, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, []string{"Ann", "a@x.com"}, rec.Fields)
	_, err = r.Next()
	require.ErrorIs(t, err, boom)
	_, ok := errors.AsType[*RecordError](err)
	require.False(t, ok)
	_, err = r.Next()
	require.ErrorIs(t, err, boom)
}

func heapAllocated() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.TotalAlloc) //nolint:gosec // far below 2^63
}

type iotestErrReader struct{ err error }

func (e iotestErrReader) Read([]byte) (int, error) { return 0, e.err }

func TestSplitterMatchesCSVOnTableInputs(t *testing.T) {
	t.Parallel()
	for _, tc := range readCases {
		checkAgainstCSV(t, []byte(tc.input), byte(tc.cfg.Delimiter))
	}
}

// checkAgainstCSV reads data with a Reader and with one csv.Reader over the
// whole input, and requires the same records, errors and end offsets.
func checkAgainstCSV(t *testing.T, data []byte, delim byte) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), Config{Header: HeaderNo, Columns: []string{"email"}, Delimiter: rune(delim)})
	require.NoError(t, err)
	body := bytes.TrimPrefix(data, bom)
	skipped := int64(len(data) - len(body))
	l := r.Layout()
	body = []byte(asRead(l, string(body)))
	if l.Transcoded != "" {
		skipped = -1 // offsets are the original's: compare only the records
	}
	whole := csv.NewReader(bytes.NewReader(body))
	whole.Comma = r.Layout().Delimiter
	whole.FieldsPerRecord = -1
	for {
		want, wantErr := whole.Read()
		got, gotErr := r.Next()
		if errors.Is(wantErr, io.EOF) {
			require.ErrorIs(t, gotErr, io.EOF, "%q", data)
			return
		}
		if wantErr != nil {
			pe, ok := errors.AsType[*csv.ParseError](wantErr)
			require.True(t, ok, "%q", data)
			require.ErrorIs(t, gotErr, pe.Err, "%q", data)
			recErr, _ := errors.AsType[*RecordError](gotErr)
			if skipped >= 0 {
				require.Equal(t, skipped+whole.InputOffset(), recErr.End, "%q", data)
			}
			continue
		}
		require.NoError(t, gotErr, "%q", data)
		require.NoError(t, decodeFields(want, EncodingAuto))
		require.Equal(t, want, got.Fields, "%q", data)
		if skipped >= 0 {
			require.Equal(t, skipped+whole.InputOffset(), got.End, "%q", data)
		}
	}
}

// TestSplitterMatchesCSVExhaustively compares every short input over the
// bytes that matter to record boundaries, where fuzzing may not look.
func TestSplitterMatchesCSVExhaustively(t *testing.T) {
	t.Parallel()
	alphabet := []byte{',', '"', '\r', '\n', 'a'}
	maxLen := 6
	if testing.Short() {
		maxLen = 4
	}
	var walk func(prefix []byte)
	walk = func(prefix []byte) {
		checkAgainstCSV(t, prefix, ',')
		if len(prefix) == maxLen {
			return
		}
		for _, c := range alphabet {
			walk(append(prefix, c))
		}
	}
	walk(make([]byte, 0, maxLen))
}

// utf16Text encodes s as UTF-16.
func utf16Text(bigEndian bool, s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// asRead is part of an input as the splitter sees it under layout l:
// decoded from UTF-16 (a part starting at the BOM or after it), CR line ends
// as LF.
func asRead(l Layout, s string) string {
	if l.Transcoded != "" {
		b := []byte(s)
		if bytes.HasPrefix(b, bomUTF16LE) || bytes.HasPrefix(b, bomUTF16BE) {
			b = b[2:]
		}
		units := make([]uint16, len(b)/2)
		for i := range units {
			if l.Transcoded == "utf-16be" {
				units[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			} else {
				units[i] = uint16(b[2*i+1])<<8 | uint16(b[2*i])
			}
		}
		s = string(utf16.Decode(units))
		if len(b)%2 == 1 {
			s += "\ufffd"
		}
	}
	if l.LineEnd == LineEndCR {
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return s
}
