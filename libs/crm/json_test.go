package crm

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/stretchr/testify/require"
)

// The generic adapter writes its request bodies and reads its batch reply
// with go-json; these tests hold it to encoding/json, byte for byte and
// field for field.

// stdBatch is the body as encoding/json writes it: what marshalBatch must
// write byte for byte.
func stdBatch(t testing.TB, reqs []Request) []byte {
	t.Helper()
	body := struct {
		Customers []batchCustomer `json:"customers"`
	}{Customers: make([]batchCustomer, len(reqs))}
	for i, r := range reqs {
		body.Customers[i] = batchCustomer{Customer: r.Customer, IdempotencyKey: r.Key}
	}
	b, err := json.Marshal(body)
	require.NoError(t, err)
	return b
}

func requireBatchAsEncodingJSON(t *testing.T, reqs []Request) {
	t.Helper()
	got, err := marshalBatch(reqs)
	require.NoError(t, err)
	require.Equal(t, string(stdBatch(t, reqs)), string(got))
}

var encodeCases = []Customer{
	{Email: "nadia.jones1@corp.example.io", Name: "Nadia Jones", FirstName: "Nadia", LastName: "Jones", Phone: "+1-555-912-2853", Attributes: map[string]string{"company": "Globex", "id": "1"}},
	{},
	{Name: "no email"},
	{Email: "a@b.com", Attributes: map[string]string{}},
	{Email: "josé@exämple.de", Name: "Zoë \u2028 \u2029 ☃ \ufffd"},
	{Email: "a@b.com", Name: `Acme & "Sons" <ltd> \ co`, Phone: "tab\there\nnew\x00\x1f\x7f"},
	{Email: "a@b.com", Name: "bad \xff utf8 \xed\xa0\x80", Attributes: map[string]string{"z": "1", "a&b": "<2>", "": "empty", "é": "\xc3", "\xff": "k"}},
}

func TestMarshalAsEncodingJSON(t *testing.T) {
	t.Parallel()
	reqs := make([]Request, len(encodeCases))
	for i, c := range encodeCases {
		reqs[i] = Request{Key: fmt.Sprintf("key-%d", i), Customer: c}
		want, err := json.Marshal(c)
		require.NoError(t, err)
		got, err := gojson.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	reqs = append(reqs, Request{Key: "", Customer: encodeCases[0]}, Request{Key: `k"<&>`, Customer: encodeCases[0]})
	requireBatchAsEncodingJSON(t, reqs)
	requireBatchAsEncodingJSON(t, reqs[:1])
	requireBatchAsEncodingJSON(t, nil)
}

func FuzzMarshalBatch(f *testing.F) {
	f.Add("a@b.com", "Ada", "k", "company", "Acme & Co")
	f.Add("", "\xff", "", "", "")
	f.Add("\u2028<>&", "\x00\x1f\x7f", "\ufffd", "é", "\xc3")
	f.Fuzz(func(t *testing.T, email, name, key, attr, value string) {
		requireBatchAsEncodingJSON(t, []Request{
			{Key: key, Customer: Customer{Email: email, Name: name, FirstName: value, Attributes: map[string]string{attr: value, "x": name}}},
			{Key: value, Customer: Customer{Phone: email, LastName: key}},
		})
	})
}

var replyCases = []string{
	`{"results":[{"status":201,"id":"cus_00000001"},{"status":200,"id":"cus_00000002"},{"status":422,"error":"email is not valid"}]}` + "\n",
	` { "results" : [ ] } `,
	`{}`,
	`{"results":[{}]}`,
	`{"results":[{"status":201,"id":"a","error":"b"}]}`,
	`{"results":null}`,
	`{"results":[{"status":201,"status":409}]}`,
	`{"results":[{"status":"201"}]}`,
	`{"results":[{"status":201.0}]}`,
	`{"results":[{"status":-1}]}`,
	`{"results":[{"status":0201}]}`,
	`{"results":[{"status":99999999999999999999}]}`,
	`{"results":[{"status":201,"id":"caf\u00e9 \udce9"}]}`,
	"{\"results\":[{\"status\":201,\"id\":\"caf\xe9\"}]}",
	`{"results":[{"Status":201,"ID":"x"}]}`,
	`{"results":[{"status":201,"other":1}]}`,
	`{"results":[],"more":1}`,
	`{"results":[]} x`,
	`{"results":[{"status":201}`,
	`{"\`,
	`[]`,
	`<html>bad gateway</html>`,
}

func TestReplyAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, body := range replyCases {
		requireReplyAgrees(t, []byte(body))
	}
}

// requireReplyAgrees checks that batchReply.decodeJSON takes what
// encoding/json takes, refuses what it refuses, and reads the same.
func requireReplyAgrees(t *testing.T, raw []byte) {
	t.Helper()
	var got, want batchReply
	gotErr := got.decodeJSON(raw)
	wantErr := json.Unmarshal(raw, &want)
	require.Equal(t, wantErr == nil, gotErr == nil, "%q: encoding/json %v, go-json %v", raw, wantErr, gotErr)
	if wantErr == nil {
		require.Equal(t, want, got, "%q", raw)
	}
}

func FuzzReply(f *testing.F) {
	for _, body := range replyCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { requireReplyAgrees(t, raw) })
}

// benchRequests are a batch of customers as the consumer sends them.
func benchRequests(n int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Key: fmt.Sprintf("%032x", i), Customer: Customer{
			Email: fmt.Sprintf("nadia.jones%d@corp.example.io", i), Name: "Nadia Jones", FirstName: "Nadia", LastName: "Jones",
			Phone: "+1-555-912-2853", Attributes: map[string]string{"company": "Globex"},
		}}
	}
	return reqs
}

// BenchmarkMarshalBatch is the encoding of one batch request of 100.
func BenchmarkMarshalBatch(b *testing.B) {
	reqs := benchRequests(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := marshalBatch(reqs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalBatchEncodingJSON is the same batch through
// encoding/json, as it was encoded before go-json.
func BenchmarkMarshalBatchEncodingJSON(b *testing.B) {
	reqs := benchRequests(100)
	b.ReportAllocs()
	for b.Loop() {
		_ = stdBatch(b, reqs)
	}
}

// mockReply is the reply of mockcrm to a batch of n new customers.
func mockReply(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"results":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":201,"id":"cus_%08d"}`, i)
	}
	b.WriteString("]}\n")
	return []byte(b.String())
}

// BenchmarkDecodeReply is the reading of a batch reply of 100.
func BenchmarkDecodeReply(b *testing.B) {
	raw := mockReply(100)
	b.ReportAllocs()
	for b.Loop() {
		var r batchReply
		if err := r.decodeJSON(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalReply is the same reply through encoding/json, as it
// was read before go-json.
func BenchmarkUnmarshalReply(b *testing.B) {
	raw := mockReply(100)
	b.ReportAllocs()
	for b.Loop() {
		var r batchReply
		if err := json.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
	}
}
