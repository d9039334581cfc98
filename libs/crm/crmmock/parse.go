package crmmock

import "bytes"

// parsePlainBatch reads a batch body as package crm writes it for ordinary
// customers, without reflection: {"customers":[...]} and nothing else, each
// customer an object of the wire form's keys spelled exactly, each at most
// once, strings without escapes, attributes an object of such strings. It
// reports false for anything else, and parseBatch then lets encoding/json
// decide, so a body it takes comes out as encoding/json would give it.
func parsePlainBatch(raw []byte) ([]batchCustomer, bool) {
	p := plainParser{b: raw}
	if !p.punct('{') {
		return nil, false
	}
	if p.punct('}') {
		return []batchCustomer{}, p.end()
	}
	if k, ok := p.str(); !ok || string(k) != "customers" || !p.punct(':') || !p.punct('[') {
		return nil, false
	}
	var out []batchCustomer
	if !p.punct(']') {
		out = make([]batchCustomer, 0, 100)
		for {
			c, ok := p.customer()
			if !ok {
				return nil, false
			}
			out = append(out, c)
			if p.punct(']') {
				break
			}
			if !p.punct(',') {
				return nil, false
			}
		}
	}
	if !p.punct('}') || !p.end() {
		return nil, false
	}
	if out == nil {
		out = []batchCustomer{}
	}
	return out, true
}

type plainParser struct {
	b []byte
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
	seenKey
)

func (p *plainParser) customer() (batchCustomer, bool) {
	var (
		c    batchCustomer
		r    = &c.req
		seen int
	)
	if !p.punct('{') {
		return c, false
	}
	if !p.punct('}') {
		for {
			k, ok := p.str()
			if !ok || !p.punct(':') {
				return c, false
			}
			var bit int
			switch string(k) {
			case "email":
				bit, ok = seenEmail, p.strInto(&r.Email)
			case "name":
				bit, ok = seenName, p.strInto(&r.Name)
			case "first_name":
				bit, ok = seenFirstName, p.strInto(&r.FirstName)
			case "last_name":
				bit, ok = seenLastName, p.strInto(&r.LastName)
			case "phone":
				bit, ok = seenPhone, p.strInto(&r.Phone)
			case "idempotency_key":
				bit, ok = seenKey, p.strInto(&c.key)
			case "attributes":
				bit = seenAttributes
				r.Attributes, ok = p.attributes()
			default:
				return c, false
			}
			if !ok || seen&bit != 0 {
				return c, false
			}
			seen |= bit
			if p.punct('}') {
				break
			}
			if !p.punct(',') {
				return c, false
			}
		}
	}
	if c.key == "" {
		return batchCustomer{}, true // refused whatever the body
	}
	c.invalid = checkCreate(c.req)
	return c, true
}

// attributes reads an object of strings; {} is an empty map, as
// encoding/json makes it, and a repeated name keeps its last value.
func (p *plainParser) attributes() (map[string]string, bool) {
	if !p.punct('{') {
		return nil, false
	}
	m := make(map[string]string)
	if p.punct('}') {
		return m, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.punct(':') {
			return nil, false
		}
		v, ok := p.str()
		if !ok {
			return nil, false
		}
		m[string(k)] = string(v)
		if p.punct('}') {
			return m, true
		}
		if !p.punct(',') {
			return nil, false
		}
	}
}

func (p *plainParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// punct moves past white space and c, if c is next.
func (p *plainParser) punct(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports that only white space is left.
func (p *plainParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string of printable ASCII without escapes: encoding/json
// would give the same bytes, and would have no invalid UTF-8 to replace.
func (p *plainParser) str() ([]byte, bool) {
	if !p.punct('"') {
		return nil, false
	}
	start := p.i
	n := bytes.IndexByte(p.b[start:], '"')
	if n < 0 {
		return nil, false
	}
	s := p.b[start : start+n]
	for _, c := range s {
		if c == '\\' || c < 0x20 || c > 0x7e {
			return nil, false
		}
	}
	p.i = start + n + 1
	return s, true
}

func (p *plainParser) strInto(dst *string) bool {
	s, ok := p.str()
	*dst = string(s)
	return ok
}
