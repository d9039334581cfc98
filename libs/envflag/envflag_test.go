package envflag_test

import (
	"bytes"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/envflag"
)

type conf struct {
	URL      string
	N        int
	On       bool
	Wait     time.Duration
	Cols     []string
	Steps    []time.Duration
	Fraction float64
}

func newSet(env map[string]string, out *bytes.Buffer) (*envflag.Set, *conf) {
	var c conf
	s := envflag.New("cmd", "cmd does things.", func(k string) string { return env[k] }, out)
	s.String(&c.URL, "url", "URL", "amqp://localhost", "where to connect")
	s.Int(&c.N, "n", "N", 4, "how many")
	s.Bool(&c.On, "on", "ON", false, "switch")
	s.Duration(&c.Wait, "wait", "WAIT", time.Second, "how long")
	s.List(&c.Cols, "columns", "COLUMNS", nil, "column `names`")
	s.Durations(&c.Steps, "steps", "STEPS", []time.Duration{time.Second, time.Minute}, "backoff steps")
	s.Float64(&c.Fraction, "fraction", "FRACTION", 0.1, "share")
	return s, &c
}

func TestPrecedenceDefaultsEnvFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, c := newSet(map[string]string{"N": "8", "URL": "amqp://env", "COLUMNS": "name, email", "STEPS": "1s,5s"}, &out)
	require.NoError(t, s.Parse([]string{"--url", "amqp://flag", "--on"}))
	require.Equal(t, conf{
		URL: "amqp://flag", N: 8, On: true, Wait: time.Second, Cols: []string{"name", "email"},
		Steps: []time.Duration{time.Second, 5 * time.Second}, Fraction: 0.1,
	}, *c)
}

func TestBadValuesNameTheirSource(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, _ := newSet(map[string]string{"N": "many"}, &out)
	err := s.Parse(nil)
	require.ErrorContains(t, err, "N=\"many\"")
	require.ErrorContains(t, err, "--n")

	s, _ = newSet(nil, &out)
	err = s.Parse([]string{"--steps", "1s,soon"})
	require.ErrorContains(t, err, "soon")
	require.ErrorContains(t, err, "-steps")
}

func TestHelpListsEnvAndDefaults(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, _ := newSet(nil, &out)
	err := s.Parse([]string{"--help"})
	require.ErrorIs(t, err, flag.ErrHelp)
	help := out.String()
	for _, want := range []string{"cmd does things.", "--url string  (env URL, default amqp://localhost)", "--columns names  (env COLUMNS", "--steps value  (env STEPS, default 1s,1m0s)", "--on  (env ON, default false)"} {
		require.Contains(t, help, want)
	}
}

func TestMistypedFlagIsOneLineNamingTheNearest(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, _ := newSet(nil, &out)
	err := s.Parse([]string{"--colums", "a"})
	require.EqualError(t, err, "unknown flag --colums (did you mean --columns?); --help lists the flags")
	s, _ = newSet(nil, &out)
	err = s.Parse([]string{"--zzzzzzzz"})
	require.EqualError(t, err, "unknown flag --zzzzzzzz; --help lists the flags", "nothing near enough")
	require.Empty(t, out.String(), "no usage text after a mistake")
}

func TestDefaultTextShowsAWorkedOutDefault(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, _ := newSet(nil, &out)
	s.DefaultText("n", "twice the cores")
	require.ErrorIs(t, s.Parse([]string{"-h"}), flag.ErrHelp)
	require.Contains(t, out.String(), "--n int  (env N, default twice the cores)")
}
