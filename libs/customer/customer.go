// Package customer is the imported row as a domain type: how an email is
// normalised into a customer's identity, what makes a row valid, and how a
// customer travels as a message between the producer and the consumers.
package customer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// ErrInvalid is wrapped by every validation and decoding error, so callers can
// tell a bad row or message (never worth a retry) from a failure of a system.
var ErrInvalid = errors.New("invalid customer")

// Field limits. They protect Postgres and the CRM from absurd values, and keep
// one message small whatever the CSV holds.
const (
	MaxEmailLen      = 254 // RFC 5321 path limit
	MaxFieldLen      = 1024
	MaxAttributes    = 64
	MaxMessageBytes  = 64 << 10
	maxLocalPartLen  = 64
	maxDomainPartLen = 253
)

// Customer is one row of an import. Email is the identity: trimmed and lower
// case, unique in Postgres and in the CRM.
type Customer struct {
	Email      string            `json:"email"`
	Name       string            `json:"name,omitempty"`
	FirstName  string            `json:"first_name,omitempty"`
	LastName   string            `json:"last_name,omitempty"`
	Phone      string            `json:"phone,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Source names the import the row came from (file name and fingerprint);
	// Row is the 1-based data row in it. Both are kept for tracing and
	// dead-letter reports, not for identity.
	Source string `json:"source,omitempty"`
	Row    int64  `json:"row,omitempty"`
	// ImportID names the import that published the row, when the program
	// that ran it gave one (the web service does); empty otherwise.
	ImportID string `json:"import_id,omitempty"`
}

// NormalizeEmail returns the identity form of an email: surrounding space
// trimmed, lower case.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// Normalize returns a copy with the email in identity form and the other
// fields trimmed. It does not validate.
func (c Customer) Normalize() Customer {
	c.Email = NormalizeEmail(c.Email)
	c.Name = strings.TrimSpace(c.Name)
	c.FirstName = strings.TrimSpace(c.FirstName)
	c.LastName = strings.TrimSpace(c.LastName)
	c.Phone = strings.TrimSpace(c.Phone)
	if c.Name == "" && (c.FirstName != "" || c.LastName != "") {
		c.Name = strings.TrimSpace(c.FirstName + " " + c.LastName)
	}
	return c
}

// Names of the fields in a FieldError.
const (
	FieldEmail     = "email"
	FieldName      = "name"
	FieldFirstName = "first_name"
	FieldLastName  = "last_name"
	FieldPhone     = "phone"
	FieldImportID  = "import_id"
)

// FieldError is a validation error that names the field at fault: email,
// name, first_name, last_name, phone, import_id, or an attribute's name (with
// Attribute set). A caller that read the customer from a file can name the
// file's own column from it. It wraps ErrInvalid.
type FieldError struct {
	// Field is one of the Field* names, or an attribute's name.
	Field     string
	Attribute bool
	// Problem completes the sentence that starts with the field, for
	// example `is 6000 bytes, at most 1024`.
	Problem string
}

func (e *FieldError) Error() string {
	field := e.Field
	if e.Attribute {
		field = "attribute " + field
	}
	return ErrInvalid.Error() + ": " + field + " " + e.Problem
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// Validate reports why a normalised customer cannot be imported. The error
// wraps ErrInvalid, is a *FieldError when one field is at fault, and its
// text is meant for a rejects report. The checks run in a fixed order, so a
// row with several faults always gets the same reason: the email, then the
// fields as a file has them (first and last name before the name they make
// up), then the attributes by name.
func (c Customer) Validate() error {
	if err := ValidateEmail(c.Email); err != nil {
		return err
	}
	for _, f := range [...]struct{ name, v string }{
		{FieldFirstName, c.FirstName}, {FieldLastName, c.LastName}, {FieldName, c.Name}, {FieldPhone, c.Phone}, {FieldImportID, c.ImportID},
	} {
		if p := textProblem(f.v); p != "" {
			return &FieldError{Field: f.name, Problem: p}
		}
	}
	if len(c.Attributes) > MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d", ErrInvalid, len(c.Attributes), MaxAttributes)
	}
	// The names are sorted only to say which fault comes first, so only
	// when there is one.
	for k, v := range c.Attributes {
		if attributeProblem(k, v) != nil {
			for _, k := range slices.Sorted(maps.Keys(c.Attributes)) {
				if err := attributeProblem(k, c.Attributes[k]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func attributeProblem(k, v string) error {
	if p := textProblem(k); p != "" {
		return &FieldError{Field: k, Attribute: true, Problem: "has a name that " + p}
	}
	if p := textProblem(v); p != "" {
		return &FieldError{Field: k, Attribute: true, Problem: p}
	}
	return nil
}

// textProblem says what is wrong with a field's text, or "".
func textProblem(v string) string {
	switch {
	case len(v) > MaxFieldLen:
		return fmt.Sprintf("is %d bytes, at most %d", len(v), MaxFieldLen)
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	case strings.ContainsRune(v, 0):
		return "contains a NUL byte"
	}
	return ""
}

func emailProblem(format string, args ...any) error {
	return &FieldError{Field: FieldEmail, Problem: fmt.Sprintf(format, args...)}
}

// ValidateEmail checks the syntax of a normalised email: one @, a non-empty
// local part and domain within RFC 5321 lengths, no spaces or control
// characters, a domain made of dot-separated labels of letters, digits and
// hyphens. A domain without a dot (user@example) is accepted, as SMTP allows
// it; whether the mailbox exists is the CRM's business.
func ValidateEmail(email string) error {
	if email == "" {
		return emailProblem("is empty")
	}
	if len(email) > MaxEmailLen {
		return emailProblem("is %d bytes, at most %d", len(email), MaxEmailLen)
	}
	if !utf8.ValidString(email) {
		return emailProblem("is not valid UTF-8")
	}
	local, domain, ok := strings.Cut(email, "@")
	if !ok {
		return emailProblem("%q has no @", email)
	}
	if strings.Contains(domain, "@") {
		return emailProblem("%q has more than one @", email)
	}
	if local == "" || len(local) > maxLocalPartLen {
		return emailProblem("%q has an empty or too long local part", email)
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return emailProblem("%q has a misplaced dot in its local part", email)
	}
	for _, r := range local {
		if badInLocal(r) {
			return emailProblem("%q has %q in its local part", email, r)
		}
	}
	if domain == "" || len(domain) > maxDomainPartLen {
		return emailProblem("%q has an empty or too long domain", email)
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return emailProblem("%q has a malformed domain", email)
		}
		for _, r := range label {
			if badInDomain(r) {
				return emailProblem("%q has %q in its domain", email, r)
			}
		}
	}
	return nil
}

func badInLocal(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiBadInLocal[r]
	}
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

func badInDomain(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiBadInDomain[r]
	}
	return !unicode.IsLetter(r) && !unicode.IsDigit(r)
}

// The ASCII answers of the email checks, looked up rather than worked out
// for each character of each email.
var asciiBadInLocal, asciiBadInDomain = func() (local, domain [utf8.RuneSelf]bool) {
	for r := range rune(utf8.RuneSelf) {
		local[r] = unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"(),:;<>[\]`, r)
		domain[r] = r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}
	return local, domain
}()

// replacementsIn counts the U+FFFD in a JSON text, written as such or as a
// \ufffd escape: at most what decoding it can give without altering it.
func replacementsIn(body []byte) int {
	n := bytes.Count(body, []byte("\uFFFD"))
	for i := 0; i+6 <= len(body); i++ {
		if body[i] == '\\' && body[i+1] == 'u' && strings.EqualFold(string(body[i+2:i+6]), "fffd") {
			n++
		}
	}
	return n
}

// replacements counts the U+FFFD in the fields decoding filled.
func (c Customer) replacements() int {
	n := 0
	for _, v := range []string{c.Email, c.Name, c.FirstName, c.LastName, c.Phone, c.Source} {
		n += strings.Count(v, "\uFFFD")
	}
	for k, v := range c.Attributes {
		n += strings.Count(k, "\uFFFD") + strings.Count(v, "\uFFFD")
	}
	return n
}

// invalidAt is the offset of the first byte of body that is not UTF-8.
func invalidAt(body []byte) int {
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(body)
}

// IdempotencyKey is the key the CRM sees for a customer. It depends on the
// identity alone, so every delivery, retry and replay of the same customer,
// from any consumer, asks the CRM for the same creation.
func IdempotencyKey(email string) string {
	sum := sha256.Sum256([]byte("customer:" + NormalizeEmail(email)))
	return hex.EncodeToString(sum[:16])
}

// Encode returns the message body for a customer.
func (c Customer) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode customer row %d: %w", c.Row, err)
	}
	return b, nil
}

// Decode parses and validates a message body. Anything it returns an error for
// wraps ErrInvalid: the message can never succeed and belongs in the
// dead-letter queue.
//
// A body that is not valid UTF-8, or whose \u escapes are not characters (a
// lone surrogate), is refused rather than decoded: encoding/json would put
// U+FFFD in their place (so does go-json), and the customer would be stored and created in the
// CRM altered.
func Decode(body []byte) (Customer, error) {
	if len(body) > MaxMessageBytes {
		return Customer{}, fmt.Errorf("%w: message is %d bytes, at most %d", ErrInvalid, len(body), MaxMessageBytes)
	}
	if !utf8.Valid(body) {
		return Customer{}, fmt.Errorf("%w: body is not valid UTF-8 (at byte %d)", ErrInvalid, invalidAt(body))
	}
	// go-json decodes as encoding/json does (json_test.go holds it to
	// that) in a third of the time: this is the consumer's decoding of
	// every delivery.
	var c Customer
	if err := gojson.Unmarshal(body, &c); err != nil {
		return Customer{}, fmt.Errorf("%w: body is not a customer JSON object: %w", ErrInvalid, err)
	}
	if n := c.replacements(); n > 0 && n > replacementsIn(body) {
		return Customer{}, fmt.Errorf("%w: body holds a \\u escape that is not a character (a lone surrogate)", ErrInvalid)
	}
	c = c.Normalize()
	if err := c.Validate(); err != nil {
		return Customer{}, err
	}
	return c, nil
}
