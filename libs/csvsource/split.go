package csvsource

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts the input into records exactly where encoding/csv (with
// LazyQuotes off) would, without parsing fields. It exists because
// csv.Reader buffers a whole record before it can say anything about it, so
// a record without an end (an unterminated quote in a 10 GB file) would be
// read into memory whole; and because after a read error csv.Reader cannot
// be told where the next record starts. The splitter keeps at most
// MaxRecordBytes of a record and always knows the next record's offset.
//
// encoding/csv's rules, which the splitter follows byte for byte (FuzzReader
// checks it against csv.Reader on the whole input):
//   - input is read in lines ending in '\n'; blank lines ("\n", "\r\n", a
//     lone "\r" at EOF) before a record are skipped;
//   - a field starting with '"' is quoted and may span lines; `""` is a
//     quote; the closing quote must be followed by the delimiter or the end
//     of the line, or the record is an error (csv.ErrQuote) that ends with
//     the current line; a quoted field that never closes runs to EOF;
//   - a '"' inside an unquoted field is an error (csv.ErrBareQuote) and the
//     record ends with the current line;
//   - otherwise the record ends with the line.
type splitter struct {
	br    *bufio.Reader
	delim byte
	max   int
	pos   int64 // offset in the original input of the next unread byte
	line  int   // physical line of the next unread byte; 0 when unknown
	buf   []byte
	// orig translates pos to an offset in the original input when the two
	// differ (a decoded UTF-16 input); nil when they are the same.
	orig func(int64) (int64, error)
}

// original is the offset in the original input of pos, which is at the
// start or the end of the input or after a line end.
func (s *splitter) original(pos int64) (int64, error) {
	if s.orig == nil {
		return pos, nil
	}
	return s.orig(pos)
}

// span is one record as found in the input.
type span struct {
	offset, end int64
	line        int
	data        []byte // the record's bytes, terminator included; nil when tooLong; valid until the next call
	tooLong     bool
}

// next returns the next record's span, or io.EOF.
func (s *splitter) next() (span, error) {
	var sp span
	started := false
	st := stFieldStart
	s.buf = s.buf[:0]
	for {
		b, err := s.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return span{}, fmt.Errorf("read input at offset %d: %w", s.pos+int64(len(b)), err)
		}
		eof := errors.Is(err, io.EOF)
		if !started {
			if len(b) == 0 && eof {
				return span{}, io.EOF
			}
			if isBlankLine(b, eof) {
				s.advance(b)
				if eof {
					return span{}, io.EOF
				}
				continue
			}
			started = true
			sp.line = s.line
			if sp.offset, err = s.original(s.pos); err != nil {
				return span{}, err
			}
		}
		if !sp.tooLong {
			if len(s.buf)+len(b) > s.max {
				// Keep scanning for the record's end, but keep none of it.
				sp.tooLong = true
				s.buf = s.buf[:0]
			} else {
				s.buf = append(s.buf, b...)
			}
		}
		var done bool
		st, done = scan(st, b, s.delim)
		s.advance(b)
		if done || eof {
			if sp.end, err = s.original(s.pos); err != nil {
				return span{}, err
			}
			if !sp.tooLong {
				sp.data = s.buf
			}
			return sp, nil
		}
	}
}

func (s *splitter) advance(b []byte) {
	s.pos += int64(len(b))
	if s.line > 0 && len(b) > 0 && b[len(b)-1] == '\n' {
		s.line++
	}
}

// isBlankLine reports whether csv.Reader skips line b before a record.
func isBlankLine(b []byte, eof bool) bool {
	switch string(b) {
	case "\n", "\r\n":
		return true
	case "\r":
		return eof // csv.Reader drops a '\r' that ends the input
	}
	return false
}

type scanState uint8

const (
	stFieldStart    scanState = iota // before the first byte of a field
	stUnquoted                       // inside an unquoted field
	stQuoted                         // inside a quoted field
	stQuotedQuote                    // just after a quote inside a quoted field
	stQuotedQuoteCR                  // just after a quote and a '\r' inside a quoted field
	stBadLine                        // after a quote error: the record ends with the line
)

// scan advances the state over b, a line or part of one ('\n' can only be
// its last byte), and reports whether the record ends with b.
func scan(st scanState, b []byte, delim byte) (scanState, bool) {
	for i := 0; i < len(b); {
		switch st {
		case stFieldStart:
			switch c := b[i]; c {
			case '"':
				st = stQuoted
			case delim:
			case '\n':
				return st, true
			default:
				st = stUnquoted
			}
			i++
		case stUnquoted:
			q := bytes.IndexByte(b[i:], '"')
			if q < 0 {
				// No quote up to the end of b: only its last byte matters.
				switch b[len(b)-1] {
				case '\n':
					return st, true
				case delim:
					return stFieldStart, false
				}
				return st, false
			}
			q += i
			if q > i && b[q-1] == delim {
				st = stQuoted
			} else {
				st = stBadLine
			}
			i = q + 1
		case stQuoted:
			q := bytes.IndexByte(b[i:], '"')
			if q < 0 {
				return st, false // a '\n' here is part of the field
			}
			i += q + 1
			st = stQuotedQuote
		case stQuotedQuote:
			switch c := b[i]; c {
			case '"':
				st = stQuoted
			case delim:
				st = stFieldStart
			case '\n':
				return st, true
			case '\r':
				st = stQuotedQuoteCR // fine if the line ends here: csv.Reader reads "\r\n" as "\n"
			default:
				st = stBadLine
			}
			i++
		case stQuotedQuoteCR:
			if b[i] == '\n' {
				return st, true
			}
			st = stBadLine
		case stBadLine:
			return st, b[len(b)-1] == '\n'
		}
	}
	return st, false
}
