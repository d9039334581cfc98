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
	"strings"
	"unicode"
	"unicode/utf8"
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

// Validate reports why a normalised customer cannot be imported. The error
// wraps ErrInvalid and its text is meant for a rejects report.
func (c Customer) Validate() error {
	if err := ValidateEmail(c.Email); err != nil {
		return err
	}
	for name, v := range map[string]string{"name": c.Name, "first_name": c.FirstName, "last_name": c.LastName, "phone": c.Phone, "import_id": c.ImportID} {
		if err := validateText(name, v); err != nil {
			return err
		}
	}
	if len(c.Attributes) > MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d", ErrInvalid, len(c.Attributes), MaxAttributes)
	}
	for k, v := range c.Attributes {
		if err := validateText("attribute name", k); err != nil {
			return err
		}
		if err := validateText("attribute "+k, v); err != nil {
			return err
		}
	}
	return nil
}

func validateText(field, v string) error {
	if len(v) > MaxFieldLen {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalid, field, len(v), MaxFieldLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, field)
	}
	return nil
}

// ValidateEmail checks the syntax of a normalised email: one @, a non-empty
// local part and domain within RFC 5321 lengths, no spaces or control
// characters, a domain made of dot-separated labels of letters, digits and
// hyphens. A domain without a dot (user@example) is accepted, as SMTP allows
// it; whether the mailbox exists is the CRM's business.
func ValidateEmail(email string) error {
	if email == "" {
		return fmt.Errorf("%w: email is empty", ErrInvalid)
	}
	if len(email) > MaxEmailLen {
		return fmt.Errorf("%w: email is %d bytes, at most %d", ErrInvalid, len(email), MaxEmailLen)
	}
	if !utf8.ValidString(email) {
		return fmt.Errorf("%w: email is not valid UTF-8", ErrInvalid)
	}
	local, domain, ok := strings.Cut(email, "@")
	if !ok {
		return fmt.Errorf("%w: email %q has no @", ErrInvalid, email)
	}
	if strings.Contains(domain, "@") {
		return fmt.Errorf("%w: email %q has more than one @", ErrInvalid, email)
	}
	if local == "" || len(local) > maxLocalPartLen {
		return fmt.Errorf("%w: email %q has an empty or too long local part", ErrInvalid, email)
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return fmt.Errorf("%w: email %q has a misplaced dot in its local part", ErrInvalid, email)
	}
	for _, r := range local {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return fmt.Errorf("%w: email %q has %q in its local part", ErrInvalid, email, r)
		}
	}
	if domain == "" || len(domain) > maxDomainPartLen {
		return fmt.Errorf("%w: email %q has an empty or too long domain", ErrInvalid, email)
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Errorf("%w: email %q has a malformed domain", ErrInvalid, email)
		}
		for _, r := range label {
			if r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				return fmt.Errorf("%w: email %q has %q in its domain", ErrInvalid, email, r)
			}
		}
	}
	return nil
}

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
// U+FFFD in their place, and the customer would be stored and created in the
// CRM altered.
func Decode(body []byte) (Customer, error) {
	if len(body) > MaxMessageBytes {
		return Customer{}, fmt.Errorf("%w: message is %d bytes, at most %d", ErrInvalid, len(body), MaxMessageBytes)
	}
	if !utf8.Valid(body) {
		return Customer{}, fmt.Errorf("%w: body is not valid UTF-8 (at byte %d)", ErrInvalid, invalidAt(body))
	}
	var c Customer
	if err := json.Unmarshal(body, &c); err != nil {
		return Customer{}, fmt.Errorf("%w: body is not a customer JSON object: %w", ErrInvalid, err)
	}
	if c.replacements() > replacementsIn(body) {
		return Customer{}, fmt.Errorf("%w: body holds a \\u escape that is not a character (a lone surrogate)", ErrInvalid)
	}
	c = c.Normalize()
	if err := c.Validate(); err != nil {
		return Customer{}, err
	}
	return c, nil
}
