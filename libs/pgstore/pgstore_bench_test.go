package pgstore_test

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/testenv"
)

// batchSize is the consumer's default prefetch, which is its batch.
const batchSize = 256

// BenchmarkInsertNew measures the consumer's batch insert: one op is one
// batch of batchSize customers. "new" inserts customers never seen (the first
// delivery of each); "duplicates" re-sends a batch already stored (a
// redelivery), which only costs the conflict checks. Allocations are reported
// per row as well as per op; building each batch's emails adds one
// allocation per row of its own.
func BenchmarkInsertNew(b *testing.B) {
	for _, tc := range []struct {
		name  string
		fresh bool
	}{
		{"new", true},
		{"duplicates", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := pgstore.Open(b.Context(), testenv.MigratedPostgres(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			batch := make([]customer.Customer, batchSize)
			for i := range batch {
				batch[i] = customer.Customer{
					Name: "Jon Doe", FirstName: "Jon", LastName: "Doe", Phone: "+1 212 555 1234",
					Attributes: map[string]string{"company": "Globex", "id": strconv.Itoa(i)},
					Source:     "bench.csv#0123abcd", Row: int64(i + 1),
				}
			}
			setEmails := func(op int) {
				for i := range batch {
					batch[i].Email = "c" + strconv.Itoa(op*batchSize+i) + "@example.com"
				}
			}
			setEmails(0)
			if !tc.fresh {
				if _, err := s.InsertNew(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			ops := 0
			for b.Loop() {
				if tc.fresh {
					setEmails(ops + 1)
				}
				inserted, err := s.InsertNew(b.Context(), batch)
				if err != nil {
					b.Fatal(err)
				}
				if want := map[bool]int{true: batchSize, false: 0}[tc.fresh]; len(inserted) != want {
					b.Fatalf("inserted %d of a batch of %d, want %d", len(inserted), batchSize, want)
				}
				ops++
			}
			runtime.ReadMemStats(&after)
			rows := float64(ops * batchSize)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/rows, "allocs/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
			b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
