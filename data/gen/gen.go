package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/custimport/custimport/libs/customer"
)

// Header is the header row of every generated file.
var Header = []string{"id", "first_name", "last_name", "email", "phone", "company"}

// Quirk rows recur every quirkPeriod rows at these offsets, so a file of any
// size exercises the CSV cases real exports contain, and a small sample holds
// each exactly once.
const (
	quirkPeriod    = 1000
	quirkComma     = 5  // company holds a comma: the field is quoted
	quirkNewline   = 11 // company holds a newline: a record spans two lines
	quirkNonASCII  = 17 // UTF-8 name
	quirkQuote     = 23 // company holds double quotes, escaped by doubling
	invalidKinds   = 3
	maxDupLookBack = 64
	// dupStream separates the random stream that shapes a duplicate from the
	// one that made the row, so both stay reproducible.
	dupStream = 0x9E3779B97F4A7C15
)

// GenConfig describes a file to generate.
type GenConfig struct {
	// Rows is the number of data rows, header excluded.
	Rows int64
	// Dups is the share of rows that repeat an earlier row's email with a
	// different case or surrounding spaces (0.02 = 2 %). Default 0.
	Dups float64
	// Invalid is the share of rows whose email is invalid, cycling through
	// empty, "not-an-email" and "a@b@c". Default 0.
	Invalid float64
	// Seed makes the output reproducible: the same config writes the same bytes.
	Seed uint64
}

func (c GenConfig) validate() error {
	if c.Rows < 0 {
		return fmt.Errorf("--rows must be >= 0, got %d", c.Rows)
	}
	if c.Dups < 0 || c.Dups > 0.5 {
		return fmt.Errorf("--dups must be in [0, 0.5], got %g", c.Dups)
	}
	if c.Invalid < 0 || c.Invalid > 0.5 {
		return fmt.Errorf("--invalid must be in [0, 0.5], got %g", c.Invalid)
	}
	return nil
}

// Summary tells what a file holds. UniqueEmails is the number of customers
// an import of the file ends with.
type Summary struct {
	Rows         int64 `json:"rows"`
	Invalid      int64 `json:"invalid"`
	Duplicates   int64 `json:"duplicates"`
	UniqueEmails int64 `json:"unique_emails"`
}

// Placement of invalid and duplicate rows is arithmetic, not random: row i is
// invalid when floor(i*rate) steps up at i, so a file holds exactly
// floor(rows*rate) of them, evenly spread, and any row's kind is known
// without remembering the rows before it. Duplicates use a half-step offset so
// the two rarely land on the same row (when they do, invalid wins).
func stepsAt(i int64, rate, offset float64) bool {
	return math.Floor(float64(i)*rate+offset) > math.Floor(float64(i-1)*rate+offset)
}

func (c GenConfig) isInvalid(i int64) bool { return c.Invalid > 0 && stepsAt(i, c.Invalid, 0) }

func (c GenConfig) isDup(i int64) bool {
	return i > 1 && c.Dups > 0 && !c.isInvalid(i) && stepsAt(i, c.Dups, 0.5)
}

// rowRand is the random source of row i alone, so that row j's email can be
// recomputed when a later row duplicates it, in O(1) memory.
func (c GenConfig) rowRand(i int64) *rand.Rand {
	return rand.New(rand.NewPCG(c.Seed, uint64(i))) //nolint:gosec // G115: i >= 1, no overflow
}

func (c GenConfig) dupRand(i int64) *rand.Rand {
	return rand.New(rand.NewPCG(c.Seed^dupStream, uint64(i))) //nolint:gosec // G115: i >= 1, no overflow
}

type person struct {
	first, last, email, phone, company string
}

func (c GenConfig) person(i int64) person {
	r := c.rowRand(i)
	first := firstNames[r.IntN(len(firstNames))]
	last := lastNames[r.IntN(len(lastNames))]
	domain := domains[r.IntN(len(domains))]
	return person{
		first:   first,
		last:    last,
		email:   strings.ToLower(first) + "." + strings.ToLower(strings.ReplaceAll(last, "'", "")) + strconv.FormatInt(i, 10) + "@" + domain,
		phone:   fmt.Sprintf("+1-555-%03d-%04d", r.IntN(1000), r.IntN(10000)),
		company: companies[r.IntN(len(companies))],
	}
}

// dupSource picks the earlier row whose email row i repeats: a random row
// before i that is itself an original (neither invalid nor a duplicate).
func (c GenConfig) dupSource(i int64, r *rand.Rand) (int64, bool) {
	j := 1 + r.Int64N(i-1)
	for range maxDupLookBack {
		if j < 1 {
			return 0, false
		}
		if !c.isInvalid(j) && !c.isDup(j) {
			return j, true
		}
		j--
	}
	return 0, false
}

// disguise returns email as a person would retype it: other case, stray spaces.
func disguise(email string, r *rand.Rand) string {
	switch r.IntN(4) {
	case 0:
		return strings.ToUpper(email)
	case 1:
		return "  " + email + " "
	case 2:
		local, domain, _ := strings.Cut(email, "@")
		return strings.ToUpper(local[:1]) + local[1:] + "@" + strings.ToUpper(domain)
	default:
		return " " + strings.ToUpper(email[:1]) + email[1:]
	}
}

func invalidEmail(n int64) string {
	switch n % invalidKinds {
	case 0:
		return ""
	case 1:
		return "not-an-email"
	default:
		return "a@b@c"
	}
}

// Generate writes cfg.Rows rows and a header to w, streaming: memory does not
// grow with the number of rows.
func Generate(w io.Writer, cfg GenConfig) (Summary, error) {
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	cw := csv.NewWriter(bw)
	if err := cw.Write(Header); err != nil {
		return Summary{}, fmt.Errorf("write header: %w", err)
	}
	var s Summary
	record := make([]string, len(Header))
	for i := int64(1); i <= cfg.Rows; i++ {
		p := cfg.person(i)
		switch {
		case cfg.isInvalid(i):
			p.email = invalidEmail(s.Invalid)
			s.Invalid++
		case cfg.isDup(i):
			r := cfg.dupRand(i)
			if j, ok := cfg.dupSource(i, r); ok {
				p = cfg.person(j)
				p.email = disguise(p.email, r)
				s.Duplicates++
			} else {
				s.UniqueEmails++
			}
		default:
			s.UniqueEmails++
		}
		switch i % quirkPeriod {
		case quirkComma:
			p.company = "Acme, Inc."
		case quirkNewline:
			p.company = "Northwind\nTraders"
		case quirkNonASCII:
			p.first, p.last = "Zoë", "Ångström-Núñez"
		case quirkQuote:
			p.company = `The "Best" Widgets`
		}
		record[0] = strconv.FormatInt(i, 10)
		record[1], record[2], record[3], record[4], record[5] = p.first, p.last, p.email, p.phone, p.company
		if err := cw.Write(record); err != nil {
			return s, fmt.Errorf("write row %d: %w", i, err)
		}
		s.Rows++
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return s, fmt.Errorf("write rows: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return s, fmt.Errorf("flush: %w", err)
	}
	return s, nil
}

// Count reads a customer CSV with a header holding an "email" column and
// says how many rows are invalid and how many distinct customers it holds,
// by the same rules as the producer (customer.NormalizeEmail, ValidateEmail).
// It remembers every distinct email, so it is meant for demo-sized files.
func Count(r io.Reader) (Summary, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return Summary{}, fmt.Errorf("read header: %w", err)
	}
	col := -1
	for k, name := range header {
		if strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(name, "\uFEFF")), "email") {
			col = k
			break
		}
	}
	if col < 0 {
		return Summary{}, fmt.Errorf("read header: no email column in %q", header)
	}
	var s Summary
	seen := make(map[string]struct{})
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, fmt.Errorf("read row %d: %w", s.Rows+1, err)
		}
		s.Rows++
		if col >= len(rec) {
			s.Invalid++
			continue
		}
		email := customer.NormalizeEmail(rec[col])
		if customer.ValidateEmail(email) != nil {
			s.Invalid++
			continue
		}
		if _, dup := seen[email]; dup {
			s.Duplicates++
			continue
		}
		seen[email] = struct{}{}
		s.UniqueEmails++
	}
}

var firstNames = []string{
	"Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isla", "Jack",
	"Karen", "Liam", "Maya", "Noah", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tara",
	"Uma", "Victor", "Wendy", "Xavier", "Yara", "Zack", "Amir", "Beatriz", "Chen", "Dmitri",
	"Eun", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kofi", "Lena", "Mateo", "Nadia",
}

var lastNames = []string{
	"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
	"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
	"Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Lewis", "Robinson", "Walker",
	"Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Hill", "Flores", "Green", "O'Brien",
}

var domains = []string{
	"example.com", "example.org", "example.net", "mail.example.com", "corp.example.io",
	"shop.example.co.uk", "test.example.de", "example.fr",
}

var companies = []string{
	"Globex", "Initech", "Umbrella Corp", "Hooli", "Stark Industries", "Wayne Enterprises",
	"Soylent", "Cyberdyne", "Wonka Industries", "Tyrell", "Vandelay Industries", "",
}
