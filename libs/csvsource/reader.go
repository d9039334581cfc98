// Package csvsource reads customer CSV files as a stream of records, each with
// its row number and byte offsets in the original file, so a reader can be
// resumed where a previous one stopped and a bad row can be reported by row
// and offset.
//
// It copes with what real exports contain: a UTF-8 BOM, CRLF, quoted
// delimiters, quotes and newlines, blank lines, ';' or tab delimiters,
// Windows-1252 text, extra or missing columns and records of any size. It
// detects a header, maps known column names (and their aliases) to canonical
// columns and, for a file without a header, guesses them from the first
// record; Reader.Layout says what was decided so the caller can log it.
//
// Memory stays bounded whatever the input: records are cut from the stream
// by a splitter that follows encoding/csv's rules and keeps at most
// Config.MaxRecordBytes of one record; each record is then parsed by
// encoding/csv. A record that cannot be parsed (a malformed quote, invalid
// UTF-8 under Encoding "utf-8", more than MaxRecordBytes) is a *RecordError
// carrying its row and offsets, and reading goes on with the next record.
//
// Where a malformed record ends follows encoding/csv: after a stray quote in
// an unquoted field, or text after a closing quote, the record ends with the
// physical line where the error is; a quoted field that is never closed runs
// until the next quote that closes it (the record then ends with that line)
// or to the end of the file, so it can swallow many lines into one error.
package csvsource

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
)

var (
	// ErrRecordTooLong is wrapped by the RecordError of a record longer than
	// Config.MaxRecordBytes. Its fields are not returned.
	ErrRecordTooLong = errors.New("record too long")
	// ErrInvalidUTF8 is wrapped by the RecordError of a record with a field
	// that is not UTF-8 under Encoding "utf-8".
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrNoEmailColumn is wrapped by NewReader's error when the header, the
	// columns given or the guess from the first record name no email
	// column: the columns must be named (Config.Columns, --columns).
	ErrNoEmailColumn = errors.New("no email column")
	// errSplit would mean the splitter and encoding/csv disagree on where a
	// record ends; FuzzReader checks that they never do.
	errSplit = errors.New("record boundary disagrees with encoding/csv")
)

// readBufferSize is the input buffer; it also bounds how much of the first
// line delimiter detection sees.
const readBufferSize = 64 << 10

var bom = []byte("\xef\xbb\xbf")

// Record is one data record. Fields are UTF-8 and belong to the caller.
type Record struct {
	Row    int64 // 1-based among data records, header excluded
	Offset int64 // byte offset of its first byte in the original file, BOM included
	End    int64 // byte offset just after it, line terminator included
	Line   int   // 1-based physical line where it starts; 0 when unknown (after a Start that seeked)
	Fields []string
}

// Position returns where a reader resumes after rec.
func (rec Record) Position() Position {
	return Position{Row: rec.Row, Offset: rec.End}
}

// RecordError is a record that could not be read as fields. The caller may
// report it and call Next again. Err says why: ErrRecordTooLong,
// ErrInvalidUTF8, or a *csv.ParseError (csv.ErrQuote, csv.ErrBareQuote)
// whose lines are physical lines of the file when known.
type RecordError struct {
	Row    int64
	Offset int64
	End    int64
	Line   int
	Fields []string // what could be parsed, undecoded; nil for ErrRecordTooLong
	Err    error
}

func (e *RecordError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("row %d (line %d, offset %d): %v", e.Row, e.Line, e.Offset, e.Err)
	}
	return fmt.Sprintf("row %d (offset %d): %v", e.Row, e.Offset, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Position returns where a reader resumes after the bad record.
func (e *RecordError) Position() Position {
	return Position{Row: e.Row, Offset: e.End}
}

// Reader reads records from a CSV stream. It is not safe for concurrent use.
type Reader struct {
	src      io.Reader
	utf16    *utf16Source // the decoder of a UTF-16 input, else nil
	split    *splitter
	csv      *csv.Reader
	feed     feed
	fed      int64 // bytes given to csv, to check it read exactly one record
	encoding string
	layout   Layout
	row      int64
	pending  *result // the first data record, read early to decide the layout
	err      error   // sticky: io.EOF or a read error

	kinds []columnKind // per column of the layout
	extra []string     // colN names of columns beyond the layout, grown on demand
}

type result struct {
	rec   Record
	cause error // why rec has no usable fields
}

type columnKind uint8

const (
	kindAttribute columnKind = iota
	kindEmail
	kindName
	kindFirstName
	kindLastName
	kindPhone
)

// NewReader reads the start of src to decide the layout (delimiter, header,
// columns), then positions itself at cfg.Start. src must be at the start of
// the file: offsets count from there. When src is an io.Seeker, a Start
// beyond the header is reached by seeking, otherwise by reading.
//
// Configuration errors name the flag; an unusable layout (a header without
// an email column, a first record without any '@' to guess from) says how to
// fix it with --columns.
func NewReader(src io.Reader, cfg Config) (*Reader, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Reader{
		src:      src,
		encoding: cfg.Encoding,
		layout:   Layout{Delimiter: cfg.Delimiter, Encoding: cfg.Encoding},
		split:    &splitter{delim: byte(cfg.Delimiter), max: cfg.MaxRecordBytes, line: 1}, //nolint:gosec // validate keeps the delimiter ASCII
	}
	br, err := r.open(bufio.NewReaderSize(src, readBufferSize))
	if err != nil {
		return nil, err
	}
	r.split.br = br
	if cfg.Delimiter == 0 {
		b, err := br.Peek(readBufferSize)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read first line: %w", err)
		}
		r.split.delim, r.layout.DelimiterAmbiguous = detectDelimiter(b)
		r.layout.Delimiter = rune(r.split.delim)
		r.layout.DelimiterDetected = true
	}
	r.resetParser()

	if err := r.readLayout(cfg); err != nil {
		return nil, err
	}
	if err := r.start(cfg.Start); err != nil {
		return nil, err
	}
	return r, nil
}

// open reads the start of the input: a UTF-16 BOM makes it decoded, a UTF-8
// BOM is skipped, and CR line ends are read as LF. It returns the buffered
// reader the splitter reads.
func (r *Reader) open(raw *bufio.Reader) (*bufio.Reader, error) {
	br := raw
	b, err := raw.Peek(len(bom))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read start of input: %w", err)
	}
	switch {
	case bytes.Equal(b, bom):
		_, _ = raw.Discard(len(bom)) // cannot fail: the bytes are buffered
		r.split.pos = int64(len(bom))
	case bytes.HasPrefix(b, bomUTF16LE), bytes.HasPrefix(b, bomUTF16BE):
		bigEndian := bytes.HasPrefix(b, bomUTF16BE)
		_, _ = raw.Discard(len(bomUTF16LE))
		r.utf16 = newUTF16Source(raw, bigEndian, int64(len(bomUTF16LE)))
		r.split.pos = int64(len(bomUTF16LE))
		r.split.orig = r.utf16.original
		r.layout.Transcoded = "utf-16le"
		if bigEndian {
			r.layout.Transcoded = "utf-16be"
		}
		br = bufio.NewReaderSize(r.utf16, readBufferSize)
	}
	// A read error here is met again by the first read that needs the bytes.
	if start, _ := br.Peek(readBufferSize); hasCRLineEnds(start) {
		r.layout.LineEnd = LineEndCR
		br = bufio.NewReaderSize(crSource{br}, readBufferSize)
	}
	return br, nil
}

// start moves to the resume position. It checks what it cheaply can: the
// offset is not inside what was already read, and follows a line end (or
// is the end of the input). It cannot tell a line end inside a quoted field
// from one between records: the offset must come from a Record or
// RecordError of the same file.
func (r *Reader) start(p Position) error {
	if p == (Position{}) {
		return nil
	}
	r.row = p.Row
	s := r.split
	pos, err := s.original(s.pos)
	if err != nil {
		return err
	}
	dataStart := pos
	if r.pending != nil {
		dataStart = r.pending.rec.Offset
	}
	switch {
	case p.Offset == dataStart:
		return nil
	case p.Offset < pos:
		return fmt.Errorf("--resume: offset %d is not after the header or first record (data starts at offset %d)", p.Offset, dataStart)
	}
	r.pending = nil
	if p.Offset == pos {
		return nil
	}

	// Stop one character short to check that the offset follows a line end.
	unit := int64(1)
	if r.utf16 != nil {
		unit = 2
	}
	target := p.Offset - unit
	seeked := false
	if sk, ok := r.src.(io.Seeker); ok {
		// A pipe is an *os.File too: when Seek fails nothing moved, so read instead.
		if _, err := sk.Seek(target, io.SeekStart); err == nil {
			s.br.Reset(r.reopen(target))
			s.pos, s.line = target, 0
			seeked = true
		}
	}
	if !seeked && r.utf16 != nil {
		return errors.New("--resume: a UTF-16 input can only be resumed from a file, not a stream")
	}
	for !seeked && s.pos < target {
		b, err := s.br.Peek(int(min(target-s.pos, readBufferSize)))
		n, _ := s.br.Discard(len(b)) // cannot fail: the bytes are buffered
		if s.line > 0 {
			s.line += bytes.Count(b[:n], []byte{'\n'})
		}
		s.pos += int64(n)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("--resume: offset %d is beyond the end of the input (%d bytes)", p.Offset, s.pos)
		}
		if err != nil {
			return fmt.Errorf("skip to offset %d: %w", p.Offset, err)
		}
	}
	c, err := s.br.ReadByte()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("--resume: offset %d is beyond the end of the input (%d bytes)", p.Offset, s.pos)
	}
	if err != nil {
		return fmt.Errorf("skip to offset %d: %w", p.Offset, err)
	}
	s.pos++
	if c == '\n' {
		if s.line > 0 {
			s.line++
		}
		return nil
	}
	if _, err := s.br.Peek(1); errors.Is(err, io.EOF) {
		return nil // the end of a last record without a line end
	}
	return fmt.Errorf("--resume: offset %d does not follow a line end: not a record boundary of this input", p.Offset)
}

// reopen returns what the splitter reads after the original input was
// moved to offset at, which follows a line end.
func (r *Reader) reopen(at int64) io.Reader {
	in := r.src
	if r.utf16 != nil {
		r.utf16 = newUTF16Source(r.src, r.utf16.bigEndian, at)
		r.split.orig = r.utf16.original
		in = r.utf16
	}
	if r.layout.LineEnd == LineEndCR {
		in = crSource{in}
	}
	return in
}

// Layout returns what the reader decided about the file.
func (r *Reader) Layout() Layout {
	l := r.layout
	l.Columns = slices.Clone(l.Columns)
	l.Header = slices.Clone(l.Header)
	return l
}

// Next returns the next record. At the end of the input it returns io.EOF.
// A record that cannot be read as fields is returned as a *RecordError and
// counts as a row; the caller may report it and call Next again. Any other
// error (reading the input) is final and returned again by later calls.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	var res result
	if r.pending != nil {
		res, r.pending = *r.pending, nil
	} else {
		var err error
		if res, err = r.read(); err != nil {
			r.err = err
			return Record{}, err
		}
	}
	r.row++
	res.rec.Row = r.row
	if res.cause != nil {
		return Record{}, &RecordError{
			Row:    res.rec.Row,
			Offset: res.rec.Offset,
			End:    res.rec.End,
			Line:   res.rec.Line,
			Fields: res.rec.Fields,
			Err:    res.cause,
		}
	}
	return res.rec, nil
}

// read cuts the next record from the input and parses it. A problem with
// the record itself is its cause; err is io.EOF or a read error.
func (r *Reader) read() (result, error) {
	sp, err := r.split.next()
	if err != nil {
		return result{}, err
	}
	res := result{rec: Record{Offset: sp.offset, End: sp.end, Line: sp.line}}
	if sp.tooLong {
		res.cause = fmt.Errorf("%w: more than %d bytes", ErrRecordTooLong, r.split.max)
		return res, nil
	}
	res.rec.Fields, res.cause = r.parse(sp)
	if res.cause == nil {
		res.cause = decodeFields(res.rec.Fields, r.encoding)
	}
	return res, nil
}

// parse hands one record's bytes to encoding/csv. The csv.Reader lives as
// long as the Reader and reads from feed, which holds exactly one record at
// a time; InputOffset proves it consumed exactly that record.
func (r *Reader) parse(sp span) ([]string, error) {
	r.feed.b = sp.data
	r.fed += int64(len(sp.data))
	fields, err := r.csv.Read()
	if errors.Is(err, io.EOF) || r.csv.InputOffset() != r.fed || len(r.feed.b) > 0 {
		r.resetParser() // so the disagreement stays inside this record
		return fields, errSplit
	}
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		if sp.line == 0 {
			// Lines are unknown after a seek; the record's offset says where it is.
			return fields, fmt.Errorf("column %d: %w", pe.Column, pe.Err)
		}
		return fields, &csv.ParseError{
			StartLine: sp.line,
			Line:      sp.line + pe.Line - pe.StartLine,
			Column:    pe.Column,
			Err:       pe.Err,
		}
	}
	return fields, err
}

func (r *Reader) resetParser() {
	r.feed.b = nil
	r.fed = 0
	r.csv = csv.NewReader(&r.feed)
	r.csv.Comma = rune(r.split.delim)
	r.csv.FieldsPerRecord = -1 // extra or missing columns are the mapping's business
	// ReuseRecord stays off: the fields slice is handed to the caller.
}

// feed is the csv.Reader's input: one record's bytes at a time.
type feed struct{ b []byte }

func (f *feed) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}
