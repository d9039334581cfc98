package customer

import (
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/stretchr/testify/require"
)

// jsonCases are bodies go-json must read as encoding/json does: as Encode
// writes them, and every shape a hand-made or hostile body may take.
var jsonCases = []struct {
	name string
	body string
}{
	{"as Encode writes it", `{"email":"nadia.jones1@corp.example.io","name":"Nadia Jones","first_name":"Nadia","last_name":"Jones","phone":"+1-555-912-2853","attributes":{"company":"Globex","id":"1"},"source":"customers.csv#0192f3c4","row":1,"import_id":"0192f3c4a1b2"}`},
	{"white space", " {\n\t\"email\" : \"a@b.com\" , \"row\" : -0 ,\"attributes\" : { } }\r\n"},
	{"empty object", `{}`},
	{"non-ASCII", `{"email":"josé@exämple.de","name":"Zoë ☃"}`},
	{"repeated attribute", `{"email":"a@b.com","attributes":{"k":"1","k":"2"}}`},
	{"repeated attributes", `{"email":"a@b.com","attributes":{"a":"1"},"attributes":{"b":"2"}}`},
	{"an escape", `{"email":"a@b.com","name":"Acme \u0026 Co"}`},
	{"a quote", `{"email":"a@b.com","name":"the \"boss\""}`},
	{"a lone surrogate", `{"email":"a@b.com","name":"Jos\udce9"}`},
	{"an escaped pair", `{"email":"a@b.com","name":"\ud83d\ude00 Jos\u00e9"}`},
	{"invalid UTF-8", "{\"email\":\"a@b.com\",\"name\":\"Jos\xe9\"}"},
	{"a repeated key", `{"email":"a@b.com","email":"c@d.com"}`},
	{"another case", `{"Email":"a@b.com","NAME":"x","email":"c@d.com"}`},
	{"an unknown key", `{"email":"a@b.com","other":[1,{"x":null}]}`},
	{"null", `{"email":"a@b.com","name":null}`},
	{"null attributes", `{"email":"a@b.com","attributes":null,"row":null}`},
	{"a fraction", `{"email":"a@b.com","row":1.5}`},
	{"a whole fraction", `{"email":"a@b.com","row":1.0}`},
	{"an exponent", `{"email":"a@b.com","row":1e3}`},
	{"a leading zero", `{"email":"a@b.com","row":012}`},
	{"a huge row", `{"email":"a@b.com","row":99999999999999999999}`},
	{"a string row", `{"email":"a@b.com","row":"1"}`},
	{"a number email", `{"email":42}`},
	{"an attribute number", `{"email":"a@b.com","attributes":{"k":1}}`},
	{"trailing garbage", `{"email":"a@b.com"} x`},
	{"trailing comma", `{"email":"a@b.com",}`},
	{"cut short", `{"email":"a@b.com"`},
	{"a dangling escape in a key", `{"\`},
	{"a control character", "{\"email\":\"a@b.com\",\"name\":\"a\tb\"}"},
	{"not an object", `[1,2]`},
}

func TestGoJSONAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireAgrees(t, []byte(tc.body))
		})
	}
}

// requireAgrees checks that go-json takes what encoding/json takes, refuses
// what it refuses, and decodes the same customer.
func requireAgrees(t *testing.T, body []byte) {
	t.Helper()
	var got, want Customer
	gotErr := gojson.Unmarshal(body, &got)
	wantErr := json.Unmarshal(body, &want)
	require.Equal(t, wantErr == nil, gotErr == nil, "%q: encoding/json %v, go-json %v", body, wantErr, gotErr)
	if wantErr == nil {
		require.Equal(t, want, got, "%q", body)
	}
}

// FuzzGoJSON holds go-json to encoding/json on any body, in any order: a
// decoder that kept state from a malformed body would show here.
func FuzzGoJSON(f *testing.F) {
	for _, tc := range jsonCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { requireAgrees(t, body) })
}

// BenchmarkDecode is the consumer's per-delivery decoding of a body as the
// producer writes it.
func BenchmarkDecode(b *testing.B) {
	body := []byte(jsonCases[0].body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEncodingJSON is the same body through encoding/json, as
// Decode read it before go-json: the measure of what go-json saves.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	body := []byte(jsonCases[0].body)
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
