package csvsource

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// decodeFields turns fields, parsed from raw bytes, into UTF-8 in place.
// Delimiters, quotes and newlines are ASCII in UTF-8 and Windows-1252
// alike, so parsing before decoding is safe for both.
func decodeFields(fields []string, encoding string) error {
	for i, f := range fields {
		switch encoding {
		case EncodingUTF8:
			if !utf8.ValidString(f) {
				return fmt.Errorf("column %d: %w", i+1, ErrInvalidUTF8)
			}
		case EncodingWindows1252:
			if !isASCII(f) {
				fields[i] = decodeWindows1252(f)
			}
		default: // EncodingAuto
			if !utf8.ValidString(f) {
				fields[i] = decodeWindows1252(f)
			}
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeWindows1252 decodes byte by byte: Windows-1252 is a single-byte
// charset, so this avoids a transformer and its buffers per field.
func decodeWindows1252(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	for i := range len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			b.WriteByte(c)
		} else {
			b.WriteRune(charmap.Windows1252.DecodeByte(c))
		}
	}
	return b.String()
}
