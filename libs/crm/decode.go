package crm

// The generic API's batch reply, read without reflection when it is as
// mockcrm and most servers write it; encoding/json reads any other.

import (
	"bytes"
	"strconv"
)

// batchReply is the 200 answer of POST /customers/batch.
type batchReply struct {
	Results []batchResult `json:"results"`
}

// decodePlain reads {"results":[{"status":201,"id":"...","error":"..."},...]}
// whose keys are spelled exactly, each at most once, whose strings are
// printable ASCII without escapes and whose statuses are plain integers. It
// reports false for anything else, leaving r as it was, and readReply then
// lets encoding/json decide; so a reply it takes comes out as encoding/json
// would give it.
func (r *batchReply) decodePlain(raw []byte) bool {
	p := replyParser{b: raw}
	if !p.punct('{') {
		return false
	}
	if p.punct('}') {
		return p.end()
	}
	if k, ok := p.str(); !ok || string(k) != "results" || !p.punct(':') || !p.punct('[') {
		return false
	}
	results := make([]batchResult, 0, 100)
	if !p.punct(']') {
		for {
			res, ok := p.result()
			if !ok {
				return false
			}
			results = append(results, res)
			if p.punct(']') {
				break
			}
			if !p.punct(',') {
				return false
			}
		}
	}
	if !p.punct('}') || !p.end() {
		return false
	}
	r.Results = results
	return true
}

type replyParser struct {
	b []byte
	i int
}

func (p *replyParser) result() (batchResult, bool) {
	const seenStatus, seenID, seenError = 1, 2, 4
	var (
		r    batchResult
		seen int
	)
	if !p.punct('{') {
		return r, false
	}
	if p.punct('}') {
		return r, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.punct(':') {
			return r, false
		}
		var bit int
		switch string(k) {
		case "status":
			bit = seenStatus
			r.Status, ok = p.int()
		case "id":
			bit = seenID
			var s []byte
			s, ok = p.str()
			r.ID = string(s)
		case "error":
			bit = seenError
			var s []byte
			s, ok = p.str()
			r.Error = string(s)
		default:
			return r, false
		}
		if !ok || seen&bit != 0 {
			return r, false
		}
		seen |= bit
		if p.punct('}') {
			return r, true
		}
		if !p.punct(',') {
			return r, false
		}
	}
}

func (p *replyParser) space() {
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
func (p *replyParser) punct(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports that only white space is left.
func (p *replyParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// str reads a string of printable ASCII without escapes.
func (p *replyParser) str() ([]byte, bool) {
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

// int reads a non-negative integer of at most 9 digits, without a leading
// zero, a fraction or an exponent.
func (p *replyParser) int() (int, bool) {
	p.space()
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 9 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	v, err := strconv.Atoi(string(p.b[start:p.i]))
	return v, err == nil
}
