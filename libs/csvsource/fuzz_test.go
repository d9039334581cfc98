package csvsource

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzReader checks that the Reader never panics, that its records tile the
// input in order (offsets monotonic and inside it, rows counting by one),
// that it cuts and parses records exactly as encoding/csv does on the whole
// input, and that a small MaxRecordBytes only turns records into errors.
func FuzzReader(f *testing.F) {
	for _, tc := range readCases {
		f.Add([]byte(tc.input), byte(tc.cfg.Delimiter), uint16(0))
		f.Add([]byte(tc.input), byte(0), uint16(16))
	}
	f.Fuzz(func(t *testing.T, data []byte, delim byte, maxRecord uint16) {
		cfg := Config{Header: HeaderNo, Columns: []string{"email"}, Delimiter: rune(delim), MaxRecordBytes: int(maxRecord)}
		if cfg.WithDefaults().validate() != nil {
			cfg.Delimiter = 0
		}
		r, err := NewReader(bytes.NewReader(data), cfg)
		require.NoError(t, err)
		var row, end int64
		if bytes.HasPrefix(data, bom) {
			end = int64(len(bom))
		}
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var pos Position
			var offset int64
			if recErr, ok := errors.AsType[*RecordError](err); ok {
				pos, offset = recErr.Position(), recErr.Offset
				if errors.Is(err, ErrRecordTooLong) && r.Layout().Transcoded == "" { // else the limit counts decoded bytes
					require.Greater(t, recErr.End-recErr.Offset, int64(cfg.WithDefaults().MaxRecordBytes))
				}
			} else {
				require.NoError(t, err)
				pos, offset = rec.Position(), rec.Offset
			}
			require.Equal(t, row+1, pos.Row)
			require.GreaterOrEqual(t, offset, end)
			require.Greater(t, pos.Offset, offset)
			require.LessOrEqual(t, pos.Offset, int64(len(data)))
			row, end = pos.Row, pos.Offset
		}
		if maxRecord == 0 {
			checkAgainstCSV(t, data, byte(cfg.Delimiter))
		}
	})
}
