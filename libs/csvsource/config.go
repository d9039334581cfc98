package csvsource

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Header modes for Config.Header.
const (
	HeaderAuto = "auto" // the first record is a header when it looks like one
	HeaderYes  = "yes"  // the first record is a header
	HeaderNo   = "no"   // every record is data
)

// Encodings for Config.Encoding.
const (
	// EncodingAuto keeps each field that is valid UTF-8 and decodes the
	// others as Windows-1252, so a file mixing both (an Excel export edited
	// twice) still reads well.
	EncodingAuto = "auto"
	// EncodingUTF8 makes a field that is not valid UTF-8 a per-record error.
	EncodingUTF8 = "utf-8"
	// EncodingWindows1252 decodes every non-ASCII field as Windows-1252,
	// the superset of Latin-1 that Excel writes.
	EncodingWindows1252 = "windows-1252"
)

// DefaultMaxRecordBytes is the default for Config.MaxRecordBytes.
const DefaultMaxRecordBytes = 1 << 20

// Config says how to read a CSV file. The zero value reads a comma-, semicolon-
// or tab-separated file whose header is detected.
type Config struct {
	// Header is HeaderAuto (default), HeaderYes or HeaderNo (flag --header).
	Header string
	// Columns names the columns by position (flag --columns, for example
	// "name,email"). Names are normalised (trimmed, lower case, spaces and
	// dashes as underscores) and known aliases map to the canonical columns
	// (mail -> email, surname -> last_name, ...). Exactly one must be email.
	// With a header, Columns overrides the header's names and the header
	// record is still skipped. Default: the header's names, or for a file
	// without a header a guess from the first record's values.
	Columns []string
	// Delimiter separates fields: a single ASCII character other than a
	// quote, CR or LF (flag --delimiter). 0 (default) picks the most frequent
	// of ',' ';' and tab outside quotes on the first non-blank line.
	Delimiter rune
	// Encoding is EncodingAuto (default), EncodingUTF8 or EncodingWindows1252
	// (flag --encoding). "utf8", "latin1", "iso-8859-1" and "cp1252" are
	// accepted as aliases.
	Encoding string
	// MaxRecordBytes bounds one record, terminator included (flag
	// --max-record-bytes). A longer record is reported as a *RecordError
	// wrapping ErrRecordTooLong, and memory stays bounded by about this much
	// whatever the record's size; of a UTF-16 input it counts the record
	// decoded to UTF-8. Default DefaultMaxRecordBytes (1 MiB).
	MaxRecordBytes int
	// Start resumes a previous read (flag --resume): the header, if any, is
	// still read from the start of the file, then reading continues at
	// Start.Offset, which must be the End of a record returned before (or
	// the Offset of the first data record), and the next record gets Row
	// Start.Row+1. Default: the zero Position, the start of the file.
	Start Position
}

// Position is a place between two records: Row records have been read and
// the next one starts at byte Offset of the original file. A Record's
// resume position is Position{Row: rec.Row, Offset: rec.End}.
type Position struct {
	Row    int64
	Offset int64
}

// WithDefaults returns a copy of c with every unset field at its default and
// aliases spelled canonically.
func (c Config) WithDefaults() Config {
	c.Header = strings.ToLower(strings.TrimSpace(c.Header))
	if c.Header == "" {
		c.Header = HeaderAuto
	}
	c.Encoding = canonicalEncoding(c.Encoding)
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	c.Columns = slices.Clone(c.Columns)
	return c
}

func canonicalEncoding(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", EncodingAuto:
		return EncodingAuto
	case EncodingUTF8, "utf8":
		return EncodingUTF8
	case EncodingWindows1252, "windows1252", "cp1252", "latin1", "latin-1", "iso-8859-1", "iso8859-1":
		return EncodingWindows1252
	default:
		return s
	}
}

// validate reports the first setting that cannot work, naming its flag.
// It expects a Config returned by WithDefaults.
func (c Config) validate() error {
	switch c.Header {
	case HeaderAuto, HeaderYes, HeaderNo:
	default:
		return fmt.Errorf("--header: %q is not one of auto, yes, no", c.Header)
	}
	switch c.Encoding {
	case EncodingAuto, EncodingUTF8, EncodingWindows1252:
	default:
		return fmt.Errorf("--encoding: %q is not one of auto, utf-8, windows-1252 (latin1)", c.Encoding)
	}
	if c.Delimiter != 0 {
		// The record splitter works on bytes, so the delimiter must be one.
		if c.Delimiter >= utf8.RuneSelf || c.Delimiter == '"' || c.Delimiter == '\r' || c.Delimiter == '\n' {
			return fmt.Errorf("--delimiter: %q cannot separate fields: use one ASCII character other than a quote, CR or LF", c.Delimiter)
		}
	}
	if c.MaxRecordBytes < 0 {
		return fmt.Errorf("--max-record-bytes: must be positive, got %d", c.MaxRecordBytes)
	}
	if c.Start.Row < 0 || c.Start.Offset < 0 {
		return fmt.Errorf("--resume: position row %d, offset %d is negative", c.Start.Row, c.Start.Offset)
	}
	if c.Start.Row > 0 && c.Start.Offset == 0 {
		return fmt.Errorf("--resume: position row %d has no byte offset", c.Start.Row)
	}
	if len(c.Columns) > 0 {
		if _, err := flagColumns(c.Columns); err != nil {
			return err
		}
	}
	return nil
}

// flagColumns turns the --columns names into column names, checking that they
// can map a record: none empty, none twice, exactly one email.
func flagColumns(names []string) ([]string, error) {
	cols := make([]string, len(names))
	for i, name := range names {
		col := canonicalName(name)
		if col == "" {
			return nil, fmt.Errorf("--columns: column %d has no name", i+1)
		}
		if j := slices.Index(cols[:i], col); j >= 0 {
			return nil, fmt.Errorf("--columns: %q names columns %d and %d (%q, %q)", col, j+1, i+1, names[j], names[i])
		}
		cols[i] = col
	}
	if !slices.Contains(cols, ColumnEmail) {
		return nil, fmt.Errorf("--columns: %w among %s", ErrNoEmailColumn, strings.Join(cols, ","))
	}
	return cols, nil
}
