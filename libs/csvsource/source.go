package csvsource

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// What the Reader does to the input before cutting it into records, decided
// from its first bytes:
//
//   - A UTF-16 BOM (Excel's "Unicode Text" export) makes the input UTF-16:
//     it is decoded to UTF-8 on the fly by utf16Source, which keeps the
//     original offset of every line end so that records still carry offsets
//     in the original file.
//   - An input whose start holds a CR and no LF has CR line ends (Excel's
//     "CSV (Macintosh)"): crSource turns every CR into LF, byte for byte, so
//     offsets do not move.

// Line ends for Layout.LineEnd.
const (
	LineEndLF = ""   // LF or CRLF, read as they are
	LineEndCR = "cr" // CR alone, detected
)

var (
	bomUTF16LE = []byte{0xff, 0xfe}
	bomUTF16BE = []byte{0xfe, 0xff}
)

// hasCRLineEnds reports whether the start of an input uses CR alone to end
// its lines: it holds a CR and no LF at all.
func hasCRLineEnds(start []byte) bool {
	return bytes.IndexByte(start, '\n') < 0 && bytes.IndexByte(start, '\r') >= 0
}

// crSource reads an input with CR line ends as if they were LF.
type crSource struct{ src io.Reader }

func (c crSource) Read(p []byte) (int, error) {
	n, err := c.src.Read(p)
	for i, b := range p[:n] {
		if b == '\r' {
			p[i] = '\n'
		}
	}
	return n, err
}

// offsetMark says that the decoded stream's byte out is the original's byte in.
type offsetMark struct{ out, in int64 }

// marksKept bounds how far behind the decoding the Reader may ask for an
// original offset: more than the Reader's buffer and the decoder's own.
const marksKept = 4 * readBufferSize

// utf16Source decodes UTF-16 (its BOM already read) to UTF-8. It marks the
// offsets after every CR or LF and at the end of the input, the only places
// a record starts or ends, so that original can translate them.
type utf16Source struct {
	src       io.Reader
	bigEndian bool
	in, out   int64 // original bytes read and decoded, UTF-8 bytes produced
	raw       []byte
	rawLen    int
	high      rune   // a high surrogate waiting for its low half, or 0
	pending   []byte // decoded, not yet read
	marks     []offsetMark
	err       error
}

func newUTF16Source(src io.Reader, bigEndian bool, in int64) *utf16Source {
	u := &utf16Source{src: src, bigEndian: bigEndian, in: in, out: in, raw: make([]byte, 16<<10)}
	u.marks = append(u.marks, offsetMark{u.out, u.in})
	return u
}

func (u *utf16Source) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		u.fill()
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}

// fill decodes the next chunk of the original into pending.
func (u *utf16Source) fill() {
	n, err := u.src.Read(u.raw[u.rawLen:])
	u.rawLen += n
	buf := u.pending[:0]
	i := 0
	for ; i+1 < u.rawLen; i += 2 {
		var unit uint16
		if u.bigEndian {
			unit = uint16(u.raw[i])<<8 | uint16(u.raw[i+1])
		} else {
			unit = uint16(u.raw[i+1])<<8 | uint16(u.raw[i])
		}
		u.in += 2
		r := rune(unit)
		switch {
		case u.high != 0 && utf16.IsSurrogate(r) && r >= 0xdc00:
			buf = utf8.AppendRune(buf, utf16.DecodeRune(u.high, r))
			u.high = 0
			continue
		case u.high != 0:
			buf = utf8.AppendRune(buf, utf8.RuneError) // a high half alone
			u.high = 0
		}
		switch {
		case r >= 0xd800 && r < 0xdc00:
			u.high = r
			continue
		case utf16.IsSurrogate(r):
			r = utf8.RuneError // a low half alone
		}
		buf = utf8.AppendRune(buf, r)
		if r == '\n' || r == '\r' {
			u.marks = append(u.marks, offsetMark{u.out + int64(len(buf)), u.in})
		}
	}
	copy(u.raw, u.raw[i:u.rawLen])
	u.rawLen -= i
	if err != nil {
		if u.high != 0 {
			buf = utf8.AppendRune(buf, utf8.RuneError)
			u.high = 0
		}
		if u.rawLen > 0 { // an odd byte at the end
			buf = utf8.AppendRune(buf, utf8.RuneError)
			u.in += int64(u.rawLen)
			u.rawLen = 0
		}
		u.marks = append(u.marks, offsetMark{u.out + int64(len(buf)), u.in})
		if errors.Is(err, io.EOF) {
			u.err = io.EOF
		} else {
			u.err = fmt.Errorf("read UTF-16 input at offset %d: %w", u.in, err)
		}
	}
	u.out += int64(len(buf))
	u.pending = buf
	u.prune()
}

// prune forgets marks too far behind to be asked for again.
func (u *utf16Source) prune() {
	i := 0
	for i < len(u.marks)-1 && u.marks[i].out < u.out-marksKept {
		i++
	}
	if i > len(u.marks)/2 {
		u.marks = append(u.marks[:0], u.marks[i:]...)
	}
}

// original returns the original offset of the decoded stream's byte out,
// which must be the start, the end, or just after a CR or LF.
func (u *utf16Source) original(out int64) (int64, error) {
	if i, ok := slices.BinarySearchFunc(u.marks, out, func(m offsetMark, out int64) int { return cmp.Compare(m.out, out) }); ok {
		return u.marks[i].in, nil
	}
	return 0, fmt.Errorf("UTF-16 input: no original offset for decoded offset %d", out)
}
