package csvsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// benchInput is a header and n rows shaped like a real export, some fields
// quoted.
func benchInput(n int) []byte {
	var b bytes.Buffer
	b.WriteString("id,first_name,last_name,email,phone,notes\r\n")
	for i := range n {
		fmt.Fprintf(&b, "%d,Firstname%d,Lastname,user%d@example.com,+1 555 %04d,", i, i, i, i%10000)
		if i%4 == 0 {
			b.WriteString(`"a note, with a comma and ""quotes"""`)
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func BenchmarkReader(b *testing.B) {
	const rows = 20000
	data := benchInput(rows)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), Config{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			_ = r.Map(rec)
			total++
		}
	}
	if total != 0 {
		b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
	}
}
