package customer_test

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/customer"
)

var emailCases = []struct {
	email string
	ok    bool
}{
	{"kathy.hunter@bing.com", true},
	{"justyn_kautzer@fannie.biz", true},
	{"nicholas@example", true},
	{"a+tag@sub.example.co.uk", true},
	{"josé@exämple.de", true},
	{"", false},
	{"not-an-email", false},
	{"a@b@c", false},
	{"@example.com", false},
	{"user@", false},
	{"user@.com", false},
	{"user@exa mple.com", false},
	{"us er@example.com", false},
	{"user.@example.com", false},
	{"us..er@example.com", false},
	{"user@-example.com", false},
	{"user@example..com", false},
	{"user@exam_ple.com", false},
	{strings.Repeat("a", 65) + "@example.com", false},
	{"user@" + strings.Repeat("a", 250) + ".com", false},
}

func TestValidateEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range emailCases {
		err := customer.ValidateEmail(tc.email)
		if tc.ok {
			require.NoError(t, err, tc.email)
		} else {
			require.ErrorIs(t, err, customer.ErrInvalid, tc.email)
		}
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	c := customer.Customer{Email: "  Berenice@Willie.NAME ", FirstName: " Jon ", LastName: "Doe"}.Normalize()
	require.Equal(t, "berenice@willie.name", c.Email)
	require.Equal(t, "Jon Doe", c.Name)
	require.Equal(t, "Jon", c.FirstName)
}

func TestIdempotencyKeyIsStablePerIdentity(t *testing.T) {
	t.Parallel()
	require.Equal(t, customer.IdempotencyKey("A@b.com"), customer.IdempotencyKey(" a@B.COM "))
	require.NotEqual(t, customer.IdempotencyKey("a@b.com"), customer.IdempotencyKey("a@c.com"))
	require.Len(t, customer.IdempotencyKey("a@b.com"), 32)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := customer.Customer{
		Email: "jon.doe@mail.com", Name: "Jon Doe", FirstName: "Jon", LastName: "Doe", Phone: "+1 212 555 1234",
		Attributes: map[string]string{"id": "1001", "company": "Acme, Inc."}, Source: "customers.csv#ab12", Row: 1001, ImportID: "0192f3c4a1b2",
	}
	body, err := in.Encode()
	require.NoError(t, err)
	out, err := customer.Decode(body)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

var decodeCases = []struct {
	name string
	body string
	ok   bool
}{
	{"valid", `{"email":"a@b.com","row":1}`, true},
	{"normalised on decode", `{"email":" A@B.com "}`, true},
	{"not json", `hello`, false},
	{"json array", `[1,2]`, false},
	{"null", `null`, false},
	{"no email", `{"name":"x"}`, false},
	{"bad email", `{"email":"nope"}`, false},
	{"wrong type", `{"email":42}`, false},
	{"trailing garbage", `{"email":"a@b.com"} x`, false},
	{"huge field", `{"email":"a@b.com","name":"` + strings.Repeat("x", customer.MaxFieldLen+1) + `"}`, false},
	{"import id", `{"email":"a@b.com","import_id":"0192f3c4a1b2"}`, true},
	{"huge import id", `{"email":"a@b.com","import_id":"` + strings.Repeat("x", customer.MaxFieldLen+1) + `"}`, false},
	{"huge body", `{"email":"a@b.com","name":"` + strings.Repeat("x", customer.MaxMessageBytes) + `"}`, false},
	// encoding/json would put U+FFFD in place of what is not a character:
	// the customer would be stored altered.
	{"invalid utf8 in a name", "{\"email\":\"a@b.com\",\"name\":\"Jos\xe9\"}", false},
	{"invalid utf8 in an email", "{\"email\":\"bad\xffutf8@poison.test\",\"name\":\"x\"}", false},
	{"invalid utf8 in an ignored field", "{\"email\":\"a@b.com\",\"other\":\"\xc3\"}", false},
	{"lone surrogate escape", `{"email":"a@b.com","name":"Jos\udce9"}`, false},
	{"a replacement character written as such", "{\"email\":\"a@b.com\",\"name\":\"Jos\uFFFD \\ufffd\"}", true},
	{"an escaped pair", `{"email":"a@b.com","name":"\ud83d\ude00 Jos\u00e9"}`, true},
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := customer.Decode([]byte(tc.body))
			if !tc.ok {
				require.ErrorIs(t, err, customer.ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "a@b.com", c.Email)
		})
	}
}

// replacementEscape is U+FFFD written as a JSON escape.
var replacementEscape = regexp.MustCompile(`\\u[fF]{3}[dD]`)

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := customer.Decode(body)
		if err != nil {
			require.ErrorIs(t, err, customer.ErrInvalid)
			return
		}
		// Whatever decodes came as UTF-8 and was not altered on the way: no
		// U+FFFD stood in for what was not a character.
		require.True(t, utf8.Valid(body), "a body that is not UTF-8 decoded")
		fields := strings.Join([]string{c.Email, c.Name, c.FirstName, c.LastName, c.Phone, c.Source}, "")
		for k, v := range c.Attributes {
			fields += k + v
		}
		written := bytes.Count(body, []byte("\uFFFD")) + len(replacementEscape.FindAll(body, -1))
		require.LessOrEqual(t, strings.Count(fields, "\uFFFD"), 2*written, "a replacement character was made up")
		// Whatever decodes must be valid, normalised, and survive a round trip.
		require.NoError(t, c.Validate())
		require.Equal(t, customer.NormalizeEmail(c.Email), c.Email)
		again, err := c.Encode()
		require.NoError(t, err)
		back, err := customer.Decode(again)
		require.NoError(t, err)
		require.Equal(t, c, back)
	})
}

func BenchmarkEncodeDecode(b *testing.B) {
	c := customer.Customer{Email: "jon.doe@mail.com", Name: "Jon Doe", Phone: "+1 212 555 1234", Source: "x.csv#ab", Row: 12}
	b.ReportAllocs()
	for b.Loop() {
		body, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := customer.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalizeValidate is the producer's per-row check.
func BenchmarkNormalizeValidate(b *testing.B) {
	raw := customer.Customer{Email: "  Jon.Doe@Mail.COM ", Name: " Jon Doe ", Phone: "+1 212 555 1234", Attributes: map[string]string{"company": "Acme"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := raw.Normalize().Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// A row with several faults gets the same reason every time, naming a field
// the row has (a long first name, not the name joined from it).
func TestValidateNamesOneFieldDeterministically(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 6000)
	c := customer.Customer{
		Email: "a@x.com", FirstName: long, LastName: "Doe", Phone: long,
		Attributes: map[string]string{"b": long, "a": long, "c": long},
	}.Normalize()
	for range 50 {
		err := c.Validate()
		fe, ok := errors.AsType[*customer.FieldError](err)
		require.True(t, ok, err)
		require.Equal(t, customer.FieldError{Field: "first_name", Problem: "is 6000 bytes, at most 1024"}, *fe)
		require.ErrorIs(t, err, customer.ErrInvalid)
	}
	c.FirstName, c.Name, c.Phone = "Jo", "Jo Doe", ""
	for range 50 {
		require.EqualError(t, c.Validate(), "invalid customer: attribute a is 6000 bytes, at most 1024")
	}
	c.Attributes = map[string]string{"z\xff": "v", "a": "\xff"}
	require.EqualError(t, c.Validate(), "invalid customer: attribute a is not valid UTF-8")
}
