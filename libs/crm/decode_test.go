package crm

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var replyCases = []struct {
	body  string
	plain bool // decodePlain takes it; otherwise encoding/json decides
}{
	{`{"results":[{"status":201,"id":"cus_00000001"},{"status":200,"id":"cus_00000002"},{"status":422,"error":"email is not valid"}]}` + "\n", true},
	{` { "results" : [ ] } `, true},
	{`{}`, true},
	{`{"results":[{}]}`, true},
	{`{"results":[{"status":201,"id":"a","error":"b"}]}`, true},
	{`{"results":null}`, false},
	{`{"results":[{"status":201,"status":409}]}`, false},
	{`{"results":[{"status":"201"}]}`, false},
	{`{"results":[{"status":201.0}]}`, false},
	{`{"results":[{"status":-1}]}`, false},
	{`{"results":[{"status":0201}]}`, false},
	{`{"results":[{"status":201,"id":"caf\u00e9"}]}`, false},
	{`{"results":[{"status":201,"id":"café"}]}`, false},
	{`{"results":[{"Status":201}]}`, false},
	{`{"results":[{"status":201,"other":1}]}`, false},
	{`{"results":[],"more":1}`, false},
	{`{"results":[]} x`, false},
	{`{"results":[{"status":201}`, false},
	{`[]`, false},
	{`<html>bad gateway</html>`, false},
}

func TestDecodePlainAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range replyCases {
		var r batchReply
		require.Equal(t, tc.plain, r.decodePlain([]byte(tc.body)), tc.body)
		requireReplyAgrees(t, []byte(tc.body))
	}
}

func requireReplyAgrees(t *testing.T, raw []byte) {
	t.Helper()
	var got batchReply
	if !got.decodePlain(raw) {
		require.Equal(t, batchReply{}, got, "a reply not taken is left alone")
		return
	}
	var want batchReply
	require.NoError(t, json.Unmarshal(raw, &want), "%s", raw)
	require.Equal(t, want, got, "%s", raw)
}

func FuzzDecodePlain(f *testing.F) {
	for _, tc := range replyCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { requireReplyAgrees(t, raw) })
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
		if !r.decodePlain(raw) {
			b.Fatal("not plain")
		}
	}
}

// BenchmarkUnmarshalReply is the same reply through encoding/json, as it
// was read before decodePlain.
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
