// Package envflag gives every command-line flag an environment variable:
// defaults first, then the environment, then the command line. Its usage text
// shows each flag with its variable and default, so --help is the whole
// configuration reference.
package envflag

import (
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
	getenv  func(string) string
	env     map[string]string // flag name -> variable
	summary string
}

// New returns an empty set for the named command. summary is printed at the
// top of the usage text (what the command does and how it is called).
func New(name, summary string, getenv func(string) string, output io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	s := &Set{fs: fs, getenv: getenv, env: map[string]string{}, summary: summary}
	fs.Usage = func() { s.PrintUsage(fs.Output()) }
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
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	return nil
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
