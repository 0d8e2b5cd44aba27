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

// parsed is a command line after parsing (by cobra, see root.go): the
// declared flags that were given, by long name, and the positional
// arguments in order.
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
