// Package envflag binds command-line flags whose defaults come from
// environment variables, so every setting has both spellings and the flag
// wins when both are given.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Set is a flag.FlagSet that remembers which variable feeds which flag, and
// the first environment value that did not parse.
type Set struct {
	*flag.FlagSet
	errs []error
}

// New returns an empty set that reports errors instead of exiting.
func New(name string) *Set {
	return &Set{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
}

// String defines a string flag defaulting to $env, else def.
func (s *Set) String(name, env, def, usage string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	return s.FlagSet.String(name, def, usage+" (env "+env+")")
}

// Bool defines a bool flag defaulting to $env, else def.
func (s *Set) Bool(name, env string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: want true or false", env, v))
		}
		def = b
	}
	return s.FlagSet.Bool(name, def, usage+" (env "+env+")")
}

// Int defines an int flag defaulting to $env, else def.
func (s *Set) Int(name, env string, def int, usage string) *int {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: want a whole number", env, v))
		}
		def = n
	}
	return s.FlagSet.Int(name, def, usage+" (env "+env+")")
}

// Duration defines a duration flag defaulting to $env, else def.
func (s *Set) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: want a duration such as 10s", env, v))
		}
		def = d
	}
	return s.FlagSet.Duration(name, def, usage+" (env "+env+")")
}

// Parse parses args, failing first on any environment value that did not parse.
func (s *Set) Parse(args []string) error {
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return s.FlagSet.Parse(args)
}
