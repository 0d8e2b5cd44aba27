package main

import (
	"fmt"
	"strings"
)

// flagSpec declares one command-line flag.
type flagSpec struct {
	name     string // long name without dashes
	short    string // one-letter alias, optional
	value    bool   // takes a value
	repeat   bool   // may be given more than once
	help     string
	valueFor string // placeholder in usage, e.g. PATH
}

// parsed is a command line after parsing: flags by long name, and the
// positional arguments in order. Flags may stand anywhere; "--" ends them.
type parsed struct {
	flags map[string][]string
	args  []string
}

func (p *parsed) has(name string) bool { _, ok := p.flags[name]; return ok }

func (p *parsed) get(name string) string {
	if v := p.flags[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

func (p *parsed) all(name string) []string { return p.flags[name] }

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// parseArgs parses args against the specs.
func parseArgs(args []string, specs []flagSpec) (*parsed, error) {
	p := &parsed{flags: map[string][]string{}}
	find := func(name string) *flagSpec {
		for i := range specs {
			if specs[i].name == name || (specs[i].short != "" && specs[i].short == name) {
				return &specs[i]
			}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.args = append(p.args, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || a == "-" {
			p.args = append(p.args, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, val, hasVal = name[:eq], name[eq+1:], true
		}
		s := find(name)
		if s == nil {
			return nil, usagef("unknown option %s", a)
		}
		if s.value && !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("option --%s needs a value", s.name)
			}
			i++
			val = args[i]
		}
		if !s.value && hasVal {
			return nil, usagef("option --%s takes no value", s.name)
		}
		if !s.repeat && p.has(s.name) {
			return nil, usagef("option --%s given twice", s.name)
		}
		p.flags[s.name] = append(p.flags[s.name], val)
	}
	return p, nil
}

// splitTarget parses NAME or NAME:/path.
func splitTarget(arg string) (name, path string, err error) {
	name, path = arg, "/"
	if i := strings.IndexByte(arg, ':'); i >= 0 {
		name, path = arg[:i], arg[i+1:]
		if path == "" {
			path = "/"
		}
	}
	if name == "" {
		return "", "", usagef("%q: expected NAME or NAME:/path", arg)
	}
	if len(path) > 1 && strings.HasSuffix(path, "/") {
		path = strings.TrimRight(path, "/")
		if path == "" {
			path = "/"
		}
	}
	return name, path, nil
}
