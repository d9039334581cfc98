// Package envflag gives every command-line flag an environment variable:
// defaults first, then the environment, then the command line. Its usage text
// shows each flag with its variable and default, so --help is the whole
// configuration reference.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Set is a flag.FlagSet whose flags may also come from the environment.
type Set struct {
	fs      *flag.FlagSet
	out     io.Writer
	getenv  func(string) string
	env     map[string]string // flag name -> variable
	summary string
}

// New returns an empty set for the named command. summary is printed at the
// top of the usage text (what the command does and how it is called).
func New(name, summary string, getenv func(string) string, output io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package would print its error and the whole usage text on a
	// mistyped flag; Parse returns one line instead, and prints the usage
	// only when asked (-h, --help).
	fs.SetOutput(io.Discard)
	s := &Set{fs: fs, out: output, getenv: getenv, env: map[string]string{}, summary: summary}
	fs.Usage = func() {}
	return s
}

// FlagSet exposes the underlying set, for Args and Visit.
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

func (s *Set) register(name, env string) {
	if env != "" {
		s.env[name] = env
	}
}

// String defines a string flag.
func (s *Set) String(p *string, name, env, def, usage string) {
	s.fs.StringVar(p, name, def, usage)
	s.register(name, env)
}

// Int defines an int flag.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	s.fs.IntVar(p, name, def, usage)
	s.register(name, env)
}

// Bool defines a bool flag.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	s.fs.BoolVar(p, name, def, usage)
	s.register(name, env)
}

// Float64 defines a float flag.
func (s *Set) Float64(p *float64, name, env string, def float64, usage string) {
	s.fs.Float64Var(p, name, def, usage)
	s.register(name, env)
}

// Duration defines a duration flag (Go syntax: 300ms, 10s, 2m).
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	s.fs.DurationVar(p, name, def, usage)
	s.register(name, env)
}

// List defines a comma-separated list flag.
func (s *Set) List(p *[]string, name, env string, def []string, usage string) {
	*p = def
	s.fs.Func(name, usage, func(v string) error {
		*p = splitList(v)
		return nil
	})
	s.setDefault(name, strings.Join(def, ","))
	s.register(name, env)
}

// Durations defines a comma-separated list of durations.
func (s *Set) Durations(p *[]time.Duration, name, env string, def []time.Duration, usage string) {
	*p = def
	s.fs.Func(name, usage, func(v string) error {
		var ds []time.Duration
		for _, f := range splitList(v) {
			d, err := time.ParseDuration(f)
			if err != nil {
				return fmt.Errorf("%q is not a duration (like 500ms, 10s, 1m)", f)
			}
			if d <= 0 {
				return fmt.Errorf("%q must be positive", f)
			}
			ds = append(ds, d)
		}
		*p = ds
		return nil
	})
	parts := make([]string, len(def))
	for i, d := range def {
		parts[i] = d.String()
	}
	s.setDefault(name, strings.Join(parts, ","))
	s.register(name, env)
}

// DefaultText sets how the usage text shows a flag's default, for a
// default that is worked out (from other flags, the host) rather than a
// value.
func (s *Set) DefaultText(name, text string) { s.setDefault(name, text) }

func (s *Set) setDefault(name, def string) {
	if f := s.fs.Lookup(name); f != nil {
		f.DefValue = def
	}
}

func splitList(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Parse applies the environment, then args. Errors name the flag or the
// variable that was wrong. It returns flag.ErrHelp for -h/--help, after
// printing the usage.
func (s *Set) Parse(args []string) error {
	names := make([]string, 0, len(s.env))
	for name := range s.env {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		env := s.env[name]
		v := s.getenv(env)
		if v == "" {
			continue
		}
		if err := s.fs.Set(name, v); err != nil {
			return fmt.Errorf("environment variable %s=%q (for --%s): %w", env, v, name, unwrapFlagErr(err))
		}
	}
	err := s.fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		s.PrintUsage(s.out)
		return err
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		msg := fmt.Sprintf("unknown flag --%s", name)
		if near := s.nearest(name); near != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", near)
		}
		return errors.New(msg + "; --help lists the flags")
	}
	return fmt.Errorf("%w; --help lists the flags", err)
}

// nearest is the defined flag closest to name, when one is close enough to
// be a typo of it.
func (s *Set) nearest(name string) string {
	best, bestDist := "", len(name)/2+2
	s.fs.VisitAll(func(f *flag.Flag) {
		if d := distance(name, f.Name); d < bestDist || (d == bestDist && best != "" && f.Name < best) {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func unwrapFlagErr(err error) error {
	if ne, ok := err.(*strconv.NumError); ok { //nolint:errorlint // flag returns it unwrapped
		return ne.Err
	}
	return err
}

// PrintUsage writes the summary and one entry per flag: its name, variable,
// default and meaning.
func (s *Set) PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nFlags (each also read from the environment variable shown):\n", strings.TrimSpace(s.summary))
	s.fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if kind != "" {
			fmt.Fprintf(w, " %s", kind)
		}
		var meta []string
		if env := s.env[f.Name]; env != "" {
			meta = append(meta, "env "+env)
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		meta = append(meta, "default "+def)
		fmt.Fprintf(w, "  (%s)\n      %s\n", strings.Join(meta, ", "), usage)
	})
}
