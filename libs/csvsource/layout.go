package csvsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Canonical column names. Every other column is an attribute, named by its
// normalised header name or colN (N its 1-based position).
const (
	ColumnEmail     = "email"
	ColumnName      = "name"
	ColumnFirstName = "first_name"
	ColumnLastName  = "last_name"
	ColumnPhone     = "phone"
)

// aliases maps normalised header names to canonical columns.
var aliases = map[string]string{
	"email": ColumnEmail, "e_mail": ColumnEmail, "email_address": ColumnEmail, "e_mail_address": ColumnEmail, "mail": ColumnEmail,
	"name": ColumnName, "full_name": ColumnName, "fullname": ColumnName, "customer_name": ColumnName,
	"first_name": ColumnFirstName, "firstname": ColumnFirstName, "given_name": ColumnFirstName, "first": ColumnFirstName,
	"last_name": ColumnLastName, "lastname": ColumnLastName, "surname": ColumnLastName, "family_name": ColumnLastName, "last": ColumnLastName,
	"phone": ColumnPhone, "phone_number": ColumnPhone, "telephone": ColumnPhone, "tel": ColumnPhone, "mobile": ColumnPhone,
}

// ColumnSource says where Layout.Columns came from.
type ColumnSource string

// Column sources.
const (
	ColumnsFromHeader  ColumnSource = "header"
	ColumnsFromFlag    ColumnSource = "--columns"
	ColumnsFromGuess   ColumnSource = "guess"
	ColumnsFromNothing ColumnSource = "" // empty input: nothing to name
)

// Layout is what a Reader decided about the file before its first record:
// each field says what was chosen and whether it was detected or declared,
// so a caller can say on stderr what it guessed.
type Layout struct {
	Delimiter         rune
	DelimiterDetected bool // picked from the first non-blank line, not configured
	// DelimiterAmbiguous: detected, and another of the candidates occurs
	// on that line too.
	DelimiterAmbiguous bool
	HasHeader          bool
	HeaderDetected     bool // decided by Header "auto", not declared
	// HeaderAmbiguous: decided "no header" by Header "auto" from a first
	// record with neither a known column name nor an email in it.
	HeaderAmbiguous bool
	// Columns names each column by position: a canonical column (email,
	// name, first_name, last_name, phone) or an attribute name. Columns of a
	// record beyond these are attributes named colN.
	Columns     []string
	ColumnsFrom ColumnSource
	// Header is the header record as the file has it (names not
	// normalised), when HasHeader.
	Header   []string
	Encoding string
	// Transcoded is "utf-16le" or "utf-16be" for an input with a UTF-16
	// BOM (decoded to UTF-8 as it is read), else "".
	Transcoded string
	// LineEnd is LineEndCR when the input ends its lines with CR alone.
	LineEnd string
}

// Guessed reports whether anything in the layout is a guess, so that a
// caller warns: the columns guessed from a first record, or a detection that
// could have gone another way. A detection the file leaves no doubt about
// is not a guess: one delimiter candidate on the first line; a header with
// a known column name and no email in it; a first record with an email in
// it, which is data.
func (l Layout) Guessed() bool {
	return l.DelimiterAmbiguous || l.HeaderAmbiguous || l.ColumnsFrom == ColumnsFromGuess
}

// String describes the layout in one line, for example
// `delimiter ";" (detected), no header (detected), columns name,email (guessed from the first record), encoding auto`.
func (l Layout) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "delimiter %q", l.Delimiter)
	switch {
	case l.DelimiterAmbiguous:
		b.WriteString(" (detected; other delimiters occur on the first line too)")
	case l.DelimiterDetected:
		b.WriteString(" (detected)")
	}
	if l.HasHeader {
		b.WriteString(", header")
	} else {
		b.WriteString(", no header")
	}
	switch {
	case l.HeaderAmbiguous:
		b.WriteString(" (detected; the first record has no known column name and no email)")
	case l.HeaderDetected:
		b.WriteString(" (detected)")
	}
	b.WriteString(", columns ")
	if len(l.Columns) == 0 {
		b.WriteString("none (empty input)")
	} else {
		b.WriteString(strings.Join(l.Columns, ","))
	}
	switch l.ColumnsFrom {
	case ColumnsFromHeader:
		b.WriteString(" (from the header)")
	case ColumnsFromFlag:
		if l.HasHeader {
			b.WriteString(" (from --columns, header names ignored)")
		} else {
			b.WriteString(" (from --columns)")
		}
	case ColumnsFromGuess:
		b.WriteString(" (guessed from the first record)")
	case ColumnsFromNothing:
	}
	b.WriteString(", encoding ")
	if l.Transcoded != "" {
		b.WriteString(l.Transcoded + " (from its BOM)")
	} else {
		b.WriteString(l.Encoding)
	}
	if l.LineEnd == LineEndCR {
		b.WriteString(", CR line ends (detected)")
	}
	return b.String()
}

// normalizeName is how header and --columns names are compared: trimmed,
// lower case, spaces and dashes as underscores.
func normalizeName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '-':
			return '_'
		}
		return r
	}, s)
}

// canonicalName is the column a header or --columns name stands for.
func canonicalName(s string) string {
	n := normalizeName(s)
	if c, ok := aliases[n]; ok {
		return c
	}
	return n
}

// looksLikeHeader is the Header "auto" rule: no value looks like an email and
// at least one is a known column name.
func looksLikeHeader(fields []string) bool {
	known := false
	for _, f := range fields {
		if strings.Contains(f, "@") {
			return false
		}
		if _, ok := aliases[normalizeName(f)]; ok {
			known = true
		}
	}
	return known
}

// headerColumns names the columns after a header record. A canonical column
// is taken by the first header that maps to it; a later one keeps its own
// normalised name as an attribute, and a name still taken or empty becomes
// colN, so every column has a distinct name.
func headerColumns(header []string) ([]string, error) {
	cols := make([]string, len(header))
	for i, h := range header {
		for _, name := range []string{canonicalName(h), normalizeName(h), colName(i)} {
			if name != "" && !slices.Contains(cols[:i], name) {
				cols[i] = name
				break
			}
		}
		// Only when colN itself was an earlier header name.
		for k := 2; cols[i] == ""; k++ {
			if name := colName(i) + "_" + strconv.Itoa(k); !slices.Contains(cols[:i], name) {
				cols[i] = name
			}
		}
	}
	if !slices.Contains(cols, ColumnEmail) {
		return nil, fmt.Errorf("header has %w (%s): name the columns with --columns", ErrNoEmailColumn, strings.Join(header, ","))
	}
	return cols, nil
}

// guessColumns names the columns of a file without a header from its first
// record: the first value containing '@' is the email; with two columns the
// other is the name; any other column is an attribute colN.
func guessColumns(first []string) ([]string, error) {
	email := slices.IndexFunc(first, func(f string) bool { return strings.Contains(f, "@") })
	if email < 0 {
		return nil, fmt.Errorf("guess columns: no value of the first record contains '@' (%w): name the columns with --columns, for example --columns name,email", ErrNoEmailColumn)
	}
	cols := make([]string, len(first))
	for i := range cols {
		switch {
		case i == email:
			cols[i] = ColumnEmail
		case len(cols) == 2:
			cols[i] = ColumnName
		default:
			cols[i] = colName(i)
		}
	}
	return cols, nil
}

// colName names the column at 0-based index i.
func colName(i int) string {
	return "col" + strconv.Itoa(i+1)
}

// Mapped is a record's values by canonical column. A column the file does not
// have is empty. Attributes holds the other non-empty values by column name
// and is nil when there are none.
type Mapped struct {
	Email      string
	Name       string
	FirstName  string
	LastName   string
	Phone      string
	Attributes map[string]string
}

// readLayout reads the header, or the first data record when the header or
// the columns depend on it, and decides the columns.
func (r *Reader) readLayout(cfg Config) error {
	var first *result
	if cfg.Header != HeaderNo || len(cfg.Columns) == 0 {
		res, err := r.read()
		switch {
		case errors.Is(err, io.EOF):
		case err != nil:
			return fmt.Errorf("read first record: %w", err)
		default:
			first = &res
		}
	}

	var header []string
	switch cfg.Header {
	case HeaderYes:
		r.layout.HasHeader = true
		if first != nil {
			if first.cause != nil {
				return fmt.Errorf("read header (line %d): %w", first.rec.Line, explain(first.cause))
			}
			header = first.rec.Fields
		}
	case HeaderAuto:
		r.layout.HeaderDetected = true
		if first != nil && first.cause == nil && looksLikeHeader(first.rec.Fields) {
			r.layout.HasHeader = true
			header = first.rec.Fields
		} else {
			r.pending = first
			// Data for sure only when it holds an email.
			r.layout.HeaderAmbiguous = first != nil && (first.cause != nil || !slices.ContainsFunc(first.rec.Fields, func(f string) bool { return strings.Contains(f, "@") }))
		}
	default: // HeaderNo
		r.pending = first
	}

	r.layout.Header = header
	var err error
	switch {
	case len(cfg.Columns) > 0:
		r.layout.Columns, err = flagColumns(cfg.Columns)
		r.layout.ColumnsFrom = ColumnsFromFlag
	case header != nil:
		r.layout.Columns, err = headerColumns(header)
		r.layout.ColumnsFrom = ColumnsFromHeader
	case r.pending != nil:
		if r.pending.cause != nil {
			return fmt.Errorf("guess columns from the first record (line %d): %w", r.pending.rec.Line, explain(r.pending.cause))
		}
		r.layout.Columns, err = guessColumns(r.pending.rec.Fields)
		r.layout.ColumnsFrom = ColumnsFromGuess
	}
	if err != nil {
		return err
	}

	r.kinds = make([]columnKind, len(r.layout.Columns))
	for i, c := range r.layout.Columns {
		switch c {
		case ColumnEmail:
			r.kinds[i] = kindEmail
		case ColumnName:
			r.kinds[i] = kindName
		case ColumnFirstName:
			r.kinds[i] = kindFirstName
		case ColumnLastName:
			r.kinds[i] = kindLastName
		case ColumnPhone:
			r.kinds[i] = kindPhone
		}
	}
	return nil
}

// explain adds to the error of a first record what usually causes it.
func explain(cause error) error {
	if errors.Is(cause, ErrRecordTooLong) {
		return fmt.Errorf("%w: the first record is over the record limit; is this a CSV file, with LF, CRLF or CR line ends?", cause)
	}
	return cause
}

// Map returns rec's values by canonical column. Values are not trimmed.
func (r *Reader) Map(rec Record) Mapped {
	var m Mapped
	for i, v := range rec.Fields {
		kind := kindAttribute
		if i < len(r.kinds) {
			kind = r.kinds[i]
		}
		switch kind {
		case kindEmail:
			m.Email = v
		case kindName:
			m.Name = v
		case kindFirstName:
			m.FirstName = v
		case kindLastName:
			m.LastName = v
		case kindPhone:
			m.Phone = v
		case kindAttribute:
			if v == "" {
				continue
			}
			if m.Attributes == nil {
				m.Attributes = make(map[string]string)
			}
			m.Attributes[r.columnName(i)] = v
		}
	}
	return m
}

// Value returns rec's value in the named column (a canonical column, an alias,
// an attribute name or colN), or "" when the record or the file has none.
func (r *Reader) Value(rec Record, column string) string {
	name := canonicalName(column)
	i := slices.Index(r.layout.Columns, name)
	if i < 0 {
		n, ok := strings.CutPrefix(name, "col")
		if !ok {
			return ""
		}
		k, err := strconv.Atoi(n)
		if err != nil || k <= len(r.layout.Columns) {
			return ""
		}
		i = k - 1
	}
	if i < len(rec.Fields) {
		return rec.Fields[i]
	}
	return ""
}

func (r *Reader) columnName(i int) string {
	if i < len(r.layout.Columns) {
		return r.layout.Columns[i]
	}
	for len(r.extra) <= i-len(r.layout.Columns) {
		r.extra = append(r.extra, colName(len(r.layout.Columns)+len(r.extra)))
	}
	return r.extra[i-len(r.layout.Columns)]
}

// detectDelimiter picks the most frequent of ',' ';' and tab outside quotes
// on the first non-blank line of b (the first record, when a quoted field
// spans lines), preferring them in that order on a tie; ',' when none occurs.
// ambiguous reports that more than one of them occurs there.
func detectDelimiter(b []byte) (delim byte, ambiguous bool) {
	candidates := []byte{',', ';', '\t'}
	var counts [3]int
	inQuotes, blank := false, true
	for _, c := range b {
		if c == '"' {
			inQuotes = !inQuotes
			blank = false
			continue
		}
		if inQuotes {
			continue
		}
		if c == '\n' {
			if !blank {
				break
			}
			continue
		}
		if c != '\r' && c != ' ' {
			blank = false
		}
		if i := bytes.IndexByte(candidates, c); i >= 0 {
			counts[i]++
		}
	}
	best, seen := 0, 0
	for i := range counts {
		if counts[i] > counts[best] {
			best = i
		}
		if counts[i] > 0 {
			seen++
		}
	}
	return candidates[best], seen > 1
}
