package crm

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// marshalBatch is the body as encoding/json writes it: what appendBatch
// must write byte for byte.
func marshalBatch(t testing.TB, reqs []Request) []byte {
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

var encodeCases = []Customer{
	{Email: "nadia.jones1@corp.example.io", Name: "Nadia Jones", FirstName: "Nadia", LastName: "Jones", Phone: "+1-555-912-2853", Attributes: map[string]string{"company": "Globex", "id": "1"}},
	{},
	{Name: "no email"},
	{Email: "a@b.com", Attributes: map[string]string{}},
	{Email: "josé@exämple.de", Name: "Zoë \u2028 ☃"},
	{Email: "a@b.com", Name: `Acme & "Sons" <ltd> \ co`, Phone: "tab\there\nnew\x00\x1f\x7f"},
	{Email: "a@b.com", Name: "bad \xff utf8", Attributes: map[string]string{"z": "1", "a&b": "<2>", "": "empty", "é": "\xc3"}},
}

func TestAppendBatchAsEncodingJSON(t *testing.T) {
	t.Parallel()
	reqs := make([]Request, len(encodeCases))
	for i, c := range encodeCases {
		reqs[i] = Request{Key: fmt.Sprintf("key-%d", i), Customer: c}
		single, err := json.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, string(single), string(appendCustomer(nil, c, nil)))
	}
	reqs = append(reqs, Request{Key: "", Customer: encodeCases[0]}, Request{Key: `k"<&>`, Customer: encodeCases[0]})
	require.Equal(t, string(marshalBatch(t, reqs)), string(appendBatch(nil, reqs)))
	require.Equal(t, string(marshalBatch(t, reqs[:1])), string(appendBatch(nil, reqs[:1])))
}

func FuzzAppendBatch(f *testing.F) {
	f.Add("a@b.com", "Ada", "k", "company", "Acme & Co")
	f.Add("", "\xff", "", "", "")
	f.Fuzz(func(t *testing.T, email, name, key, attr, value string) {
		reqs := []Request{
			{Key: key, Customer: Customer{Email: email, Name: name, FirstName: value, Attributes: map[string]string{attr: value, "x": name}}},
			{Key: value, Customer: Customer{Phone: email, LastName: key}},
		}
		require.Equal(t, string(marshalBatch(t, reqs)), string(appendBatch(nil, reqs)))
	})
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

// BenchmarkAppendBatch is the encoding of one batch request of 100.
func BenchmarkAppendBatch(b *testing.B) {
	reqs := benchRequests(100)
	b.ReportAllocs()
	for b.Loop() {
		_ = appendBatch(make([]byte, 0, batchBodySize(reqs)), reqs)
	}
}

// BenchmarkMarshalBatch is the same batch through encoding/json, as it was
// encoded before appendBatch.
func BenchmarkMarshalBatch(b *testing.B) {
	reqs := benchRequests(100)
	b.ReportAllocs()
	for b.Loop() {
		_ = marshalBatch(b, reqs)
	}
}
