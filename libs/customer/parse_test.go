package customer

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var parseCases = []struct {
	name  string
	body  string
	plain bool // parsePlain takes it; otherwise encoding/json decides
}{
	{"as Encode writes it", `{"email":"nadia.jones1@corp.example.io","name":"Nadia Jones","first_name":"Nadia","last_name":"Jones","phone":"+1-555-912-2853","attributes":{"company":"Globex","id":"1"},"source":"customers.csv#0192f3c4","row":1,"import_id":"0192f3c4a1b2"}`, true},
	{"white space", " {\n\t\"email\" : \"a@b.com\" , \"row\" : -0 ,\"attributes\" : { } }\r\n", true},
	{"empty object", `{}`, true},
	{"non-ASCII", `{"email":"josé@exämple.de","name":"Zoë ☃"}`, true},
	{"repeated attribute", `{"email":"a@b.com","attributes":{"k":"1","k":"2"}}`, true},
	{"an escape", `{"email":"a@b.com","name":"Acme \u0026 Co"}`, false},
	{"a quote", `{"email":"a@b.com","name":"the \"boss\""}`, false},
	{"a lone surrogate", `{"email":"a@b.com","name":"Jos\udce9"}`, false},
	{"a repeated key", `{"email":"a@b.com","email":"c@d.com"}`, false},
	{"another case", `{"Email":"a@b.com"}`, false},
	{"an unknown key", `{"email":"a@b.com","other":[1,{"x":null}]}`, false},
	{"null", `{"email":"a@b.com","name":null}`, false},
	{"null attributes", `{"email":"a@b.com","attributes":null}`, false},
	{"a fraction", `{"email":"a@b.com","row":1.5}`, false},
	{"an exponent", `{"email":"a@b.com","row":1e3}`, false},
	{"a leading zero", `{"email":"a@b.com","row":012}`, false},
	{"a huge row", `{"email":"a@b.com","row":99999999999999999999}`, false},
	{"a string row", `{"email":"a@b.com","row":"1"}`, false},
	{"a number email", `{"email":42}`, false},
	{"an attribute number", `{"email":"a@b.com","attributes":{"k":1}}`, false},
	{"trailing garbage", `{"email":"a@b.com"} x`, false},
	{"trailing comma", `{"email":"a@b.com",}`, false},
	{"cut short", `{"email":"a@b.com"`, false},
	{"a control character", "{\"email\":\"a@b.com\",\"name\":\"a\tb\"}", false},
	{"not an object", `[1,2]`, false},
}

func TestParsePlainAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ok := parsePlain([]byte(tc.body))
			require.Equal(t, tc.plain, ok)
			requireAgrees(t, []byte(tc.body))
		})
	}
}

// requireAgrees checks that what parsePlain takes, encoding/json takes too
// and decodes the same.
func requireAgrees(t *testing.T, body []byte) {
	t.Helper()
	got, ok := parsePlain(body)
	if !ok {
		return
	}
	var want Customer
	require.NoError(t, json.Unmarshal(body, &want))
	require.Equal(t, want, got)
}

func FuzzParsePlain(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // Decode refuses it before parsing
		}
		requireAgrees(t, body)
	})
}

// BenchmarkDecode is the consumer's per-delivery decoding of a body as the
// producer writes it.
func BenchmarkDecode(b *testing.B) {
	body := []byte(parseCases[0].body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEncodingJSON is the same body through encoding/json, the
// path of a body with escapes: the measure of what parsePlain saves.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	body := []byte(parseCases[0].body)
	b.ReportAllocs()
	for b.Loop() {
		var c Customer
		if err := json.Unmarshal(body, &c); err != nil {
			b.Fatal(err)
		}
		if c.replacements() > replacementsIn(body) {
			b.Fatal("replacements")
		}
		if err := c.Normalize().Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
