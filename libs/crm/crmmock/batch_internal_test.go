package crmmock

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/stretchr/testify/require"
)

var batchBodies = []string{
	`{"customers":[{"email":"a@b.com","name":"A","attributes":{"k":"v"},"idempotency_key":"k1"},{"email":"c@d.com","idempotency_key":"k2"}]}`,
	`{"customers":[]}`,
	`{"customers":null}`,
	`{}`,
	`{"customers":[null,{"email":"a@b.com"}]}`,
	`{"customers":[{"email":"a@b.com","idempotency_key":5}]}`,
	`{"customers":[{"email":5,"idempotency_key":"k"},{"email":"ok@b.com","idempotency_key":"k2"}]}`,
	`{"customers":["x",{"email":"a@b.com","idempotency_key":"k"}]}`,
	`{"customers":[{"email":"no-at","idempotency_key":"k"},{"email":"","idempotency_key":"k2"},{"idempotency_key":"k3"}]}`,
	`{"customers":[{"EMAIL":"a@b.com","Idempotency_Key":"k","other":[1,2]}]}`,
	`{"customers":[{"email":"a@b.com","idempotency_key":"k","attributes":{"n":1}}]}`,
	`{"customers":5}`,
	`{"customers":[{"email":"a@b.com","idempotency_key":"k"}]`,
	`[]`,
	`not json`,
	` { "customers" : [ { "email" : "a@b.com" , "idempotency_key" : "k" , "attributes" : { } } ] } `,
	`{"customers":[{"email":"a@b.com","attributes":{"k":"1","k":"2"},"idempotency_key":"k"},{}]}`,
	`{"customers":[{"email":"a@b.com","email":"c@d.com","idempotency_key":"k","idempotency_key":"k2"}]}`,
	`{"customers":[{"email":"caf\u00e9@b.com","name":"Jos\udce9","idempotency_key":"k\""}]}`,
	"{\"customers\":[{\"email\":\"a@b.com\",\"name\":\"Jos\xe9\",\"idempotency_key\":\"k\"}]}",
	`{"customers":[{"email":"a@b.com","idempotency_key":"k","attributes":null,"name":null}]}`,
	`{"customers":[{"email":"a@b.com","idempotency_key":"k"}],"customers":[{"email":"c@d.com","idempotency_key":"k2"}]}`,
	`{"customers":[{"\`,
}

func TestParseBatchAsCustomerByCustomer(t *testing.T) {
	t.Parallel()
	for _, body := range batchBodies {
		require.Equal(t, parseBatchEach([]byte(body)), parseBatch([]byte(body)), body)
	}
}

// A body that repeats the "customers" key is read as encoding/json reads
// it: the second list is decoded into the first list's elements, so a field
// the second leaves out keeps the first's value. The customer-by-customer
// reading (parseBatchEach) replaces the list instead; RFC 8259 leaves
// repeated names to the reader, and no client sends them, so parseBatch is
// held to encoding/json (FuzzWireBatch) rather than to that reading.
func TestParseBatchRepeatedListAsEncodingJSON(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"customers":[{"idempotency_key":"k1","email":"a@b.com"}],"customers":[{"email":"c@d.com"}]}`)
	requireWireAgrees(t, raw)
	got := parseBatch(raw)
	require.Len(t, got, 1)
	require.Equal(t, "k1", got[0].key)
	require.Equal(t, "c@d.com", got[0].req.Email)
}

// parseBatch's one pass reads wireBatch with go-json; encoding/json must
// take, refuse and read every body the same.
func requireWireAgrees(t *testing.T, raw []byte) {
	t.Helper()
	var got, want wireBatch
	gotErr := gojson.Unmarshal(raw, &got)
	wantErr := json.Unmarshal(raw, &want)
	require.Equal(t, wantErr == nil, gotErr == nil, "%q: encoding/json %v, go-json %v", raw, wantErr, gotErr)
	if wantErr == nil {
		require.Equal(t, want, got, "%q", raw)
	}
}

func TestWireBatchAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, body := range batchBodies {
		requireWireAgrees(t, []byte(body))
	}
}

func FuzzWireBatch(f *testing.F) {
	for _, body := range batchBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { requireWireAgrees(t, raw) })
}

// A reply's body is written as the map it replaced would be.
func TestReplyBodyAsMap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body replyBody
		m    map[string]string
	}{
		{replyBody{ID: "cus_00000001", Email: "a@b.com"}, map[string]string{"id": "cus_00000001", "email": "a@b.com"}},
		{replyBody{Error: "customer already exists", ID: "cus_00000002"}, map[string]string{"error": "customer already exists", "id": "cus_00000002"}},
		{replyBody{Error: "rate limit exceeded"}, map[string]string{"error": "rate limit exceeded"}},
	} {
		got, err := json.Marshal(tc.body)
		require.NoError(t, err)
		want, err := json.Marshal(tc.m)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}

func TestFormatID(t *testing.T) {
	t.Parallel()
	for _, n := range []uint32{0, 1, 9, 10, 12345678, 99999999, 100000000, 123456789, math.MaxUint32} {
		require.Equal(t, fmt.Sprintf("cus_%08d", n), formatID(n))
	}
}
