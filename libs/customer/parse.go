package customer

import (
	"bytes"
	"strconv"
)

// parsePlain reads the body of a message as Encode writes it for an
// ordinary row, without reflection: one JSON object whose keys are the
// Customer's own tags spelled exactly, each at most once; strings without
// escapes; row a plain integer; attributes an object of such strings. It
// reports false for anything else (an escape, an unknown or repeated key,
// null, a fraction, malformed JSON), and the caller then lets
// encoding/json decide, so the result of a body it accepts is exactly what
// json.Unmarshal would have given, and every other body is decoded, or
// refused, as before.
//
// The body must be valid UTF-8; the strings share one copy of it.
func parsePlain(body []byte) (Customer, bool) {
	p := plainParser{b: body, s: string(body)}
	c, ok := p.customer()
	if !ok || p.skipSpace() != len(body) {
		return Customer{}, false
	}
	return c, true
}

// plainParser walks b; s is the same bytes as one string, so that a value
// is a substring of it rather than an allocation of its own.
type plainParser struct {
	b []byte
	s string
	i int
}

// Bits of the keys seen, so that a repeated key is left to encoding/json.
const (
	seenEmail = 1 << iota
	seenName
	seenFirstName
	seenLastName
	seenPhone
	seenAttributes
	seenSource
	seenRow
	seenImportID
)

func (p *plainParser) customer() (Customer, bool) {
	var c Customer
	if !p.open() {
		return c, false
	}
	if p.close() {
		return c, true
	}
	seen := 0
	for {
		key, ok := p.str()
		if !ok || !p.colon() {
			return c, false
		}
		var bit int
		switch key {
		case "email":
			bit, ok = seenEmail, p.strInto(&c.Email)
		case "name":
			bit, ok = seenName, p.strInto(&c.Name)
		case "first_name":
			bit, ok = seenFirstName, p.strInto(&c.FirstName)
		case "last_name":
			bit, ok = seenLastName, p.strInto(&c.LastName)
		case "phone":
			bit, ok = seenPhone, p.strInto(&c.Phone)
		case "source":
			bit, ok = seenSource, p.strInto(&c.Source)
		case "import_id":
			bit, ok = seenImportID, p.strInto(&c.ImportID)
		case "row":
			bit = seenRow
			c.Row, ok = p.int()
		case "attributes":
			bit = seenAttributes
			c.Attributes, ok = p.attributes()
		default:
			return c, false
		}
		if !ok || seen&bit != 0 {
			return c, false
		}
		seen |= bit
		if p.close() {
			return c, true
		}
		if !p.comma() {
			return c, false
		}
	}
}

// attributes reads an object of strings; {} is an empty map, as
// encoding/json makes it, and a repeated name keeps its last value.
func (p *plainParser) attributes() (map[string]string, bool) {
	if !p.open() {
		return nil, false
	}
	m := make(map[string]string)
	if p.close() {
		return m, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.colon() {
			return nil, false
		}
		v, ok := p.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		if p.close() {
			return m, true
		}
		if !p.comma() {
			return nil, false
		}
	}
}

// skipSpace moves past JSON white space and returns where it stopped.
func (p *plainParser) skipSpace() int {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return p.i
		}
	}
	return p.i
}

// punct moves past white space and c, if c is next.
func (p *plainParser) punct(c byte) bool {
	if i := p.skipSpace(); i < len(p.b) && p.b[i] == c {
		p.i++
		return true
	}
	return false
}

func (p *plainParser) open() bool  { return p.punct('{') }
func (p *plainParser) close() bool { return p.punct('}') }
func (p *plainParser) colon() bool { return p.punct(':') }
func (p *plainParser) comma() bool { return p.punct(',') }

// str reads a string without escapes or control characters.
func (p *plainParser) str() (string, bool) {
	if !p.punct('"') {
		return "", false
	}
	start := p.i
	n := bytes.IndexByte(p.b[start:], '"')
	if n < 0 {
		return "", false
	}
	for _, c := range p.b[start : start+n] {
		if c == '\\' || c < 0x20 {
			return "", false
		}
	}
	p.i = start + n + 1
	return p.s[start : start+n], true
}

func (p *plainParser) strInto(dst *string) bool {
	v, ok := p.str()
	*dst = v
	return ok
}

// int reads an integer as JSON writes it (no leading zero, no fraction or
// exponent) that int64 holds with room to spare.
func (p *plainParser) int() (int64, bool) {
	start := p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 18 || (n > 1 && p.b[digits] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	v, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return v, err == nil
}
