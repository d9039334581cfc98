package crm

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()

	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "empty", value: "", want: 0},
		{name: "seconds", value: "120", want: 2 * time.Minute},
		{name: "seconds padded", value: " 3 ", want: 3 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-5", want: 0},
		{name: "huge capped", value: "99999999999999", want: maxRetryAfter},
		{name: "http date", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "rfc 850 date", value: now.Add(time.Minute).Format(time.RFC850), want: time.Minute},
		{name: "asctime date", value: now.Add(time.Minute).Format(time.ANSIC), want: time.Minute},
		{name: "past date", value: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "far date capped", value: now.Add(1000 * time.Hour).Format(http.TimeFormat), want: maxRetryAfter},
		{name: "garbage", value: "later", want: 0},
		{name: "fraction", value: "1.5", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, parseRetryAfter(tt.value, now))
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "120", "-1", "Sat, 01 Mar 2025 12:01:30 GMT", "99999999999999999999"} {
		f.Add(seed)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %s, outside [0, %s]", v, d, maxRetryAfter)
		}
	})
}
