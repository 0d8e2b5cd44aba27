package handlers

import (
	"fmt"
	"regexp"
	"strings"
)

// Spec is one --handler flag: which paths (Glob; "" for every path) fire
// which script.
type Spec struct {
	Glob   string
	Script string
}

// String gives the spec back in flag form.
func (s Spec) String() string {
	if s.Glob == "" {
		return s.Script
	}
	return s.Glob + "=" + s.Script
}

// ParseSpec parses a --handler value: "GLOB=SCRIPT" or "SCRIPT". The value is
// split at its first '=', so a script whose path contains '=' must be given
// with a glob ("**=/opt/a=b/run"). The glob's syntax is checked here; the
// script is checked by Start.
func ParseSpec(s string) (Spec, error) {
	if strings.TrimSpace(s) == "" {
		return Spec{}, fmt.Errorf("empty handler: want SCRIPT or GLOB=SCRIPT")
	}
	glob, script, found := strings.Cut(s, "=")
	if !found {
		return Spec{Script: s}, nil
	}
	if glob == "" {
		return Spec{}, fmt.Errorf("handler %q: empty GLOB before '=' (leave out 'GLOB=' to match every path)", s)
	}
	if script == "" {
		return Spec{}, fmt.Errorf("handler %q: empty SCRIPT after '='", s)
	}
	if _, err := compileGlob(glob); err != nil {
		return Spec{}, fmt.Errorf("handler %q: %v", s, err)
	}
	return Spec{Glob: glob, Script: script}, nil
}

// NormalizeGlob returns the absolute form of a glob: a glob without a leading
// '/' is relative to '/'; "" stays "" (every path).
func NormalizeGlob(g string) string {
	if g == "" || strings.HasPrefix(g, "/") {
		return g
	}
	return "/" + g
}

// matcher matches paths inside the filesystem against one glob. A nil
// matcher matches every path.
type matcher struct {
	glob string
	re   *regexp.Regexp
}

func (m *matcher) match(p string) bool { return m == nil || m.re.MatchString(p) }

// compileGlob turns a glob into a matcher (nil for ""). The syntax:
//
//   - any run of characters except '/'
//     ?       one character except '/'
//     [abc]   one character of the set; [a-z] ranges, [!abc] or [^abc] negation
//     (never '/')
//     **      any run of characters, '/' included; as a whole segment it is
//     zero or more directories: /etc/**/*.conf matches /etc/a.conf and
//     /etc/x/y/a.conf, and a trailing /** matches the directory itself
//     and everything below it
//     \c      the character c itself
//
// Matching is on whole paths, by RE2 (linear time, no backtracking).
func compileGlob(glob string) (*matcher, error) {
	if glob == "" {
		return nil, nil
	}
	g := []rune(NormalizeGlob(glob))
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(g); {
		c := g[i]
		switch {
		case c == '/' && i+2 < len(g) && g[i+1] == '*' && g[i+2] == '*':
			// "/**" as a whole segment?
			j := i + 1
			for j < len(g) && g[j] == '*' {
				j++
			}
			switch {
			case j == len(g): // trailing "/**": the directory and all below
				b.WriteString(`(?:/.*)?`)
				i = j
			case g[j] == '/': // "/**/": zero or more directories
				b.WriteString(`/(?:.*/)?`)
				i = j + 1
			default: // "/**x": '/' then a crossing star
				b.WriteString(`/`)
				i++
			}
		case c == '*':
			j := i
			for j < len(g) && g[j] == '*' {
				j++
			}
			if j-i >= 2 {
				b.WriteString(`.*`)
			} else {
				b.WriteString(`[^/]*`)
			}
			i = j
		case c == '?':
			b.WriteString(`[^/]`)
			i++
		case c == '[':
			n, cls, err := globClass(g[i:])
			if err != nil {
				return nil, fmt.Errorf("glob %q: %v", glob, err)
			}
			b.WriteString(cls)
			i += n
		case c == '\\':
			if i+1 >= len(g) {
				return nil, fmt.Errorf("glob %q ends with a lone '\\'", glob)
			}
			b.WriteString(regexp.QuoteMeta(string(g[i+1])))
			i += 2
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
			i++
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("glob %q: %v", glob, err)
	}
	return &matcher{glob: glob, re: re}, nil
}

// globClass translates a bracket expression at the start of g; it returns
// how many runes it used and the RE2 class. '/' is never matched.
func globClass(g []rune) (int, string, error) {
	i := 1
	neg := false
	if i < len(g) && (g[i] == '!' || g[i] == '^') {
		neg = true
		i++
	}
	var b strings.Builder
	b.WriteString("[")
	if neg {
		b.WriteString("^/")
	}
	first := true
	items := 0
	for {
		if i >= len(g) {
			return 0, "", fmt.Errorf("unclosed '['")
		}
		c := g[i]
		if c == ']' && !first {
			i++
			break
		}
		first = false
		if c == '\\' {
			if i+1 >= len(g) {
				return 0, "", fmt.Errorf("unclosed '['")
			}
			i++
			c = g[i]
		}
		i++
		lo, hi := c, c
		if i+1 < len(g) && g[i] == '-' && g[i+1] != ']' {
			hi = g[i+1]
			if hi == '\\' && i+2 < len(g) {
				hi = g[i+2]
				i++
			}
			i += 2
			if hi < lo {
				return 0, "", fmt.Errorf("bad range %c-%c in [...]", lo, hi)
			}
		}
		// Never '/': split a range around it (a negated class excludes it
		// already).
		if !neg && lo <= '/' && '/' <= hi {
			if lo < '/' {
				writeRange(&b, lo, '/'-1)
				items++
			}
			if hi > '/' {
				writeRange(&b, '/'+1, hi)
				items++
			}
			continue
		}
		writeRange(&b, lo, hi)
		items++
	}
	if items == 0 && !neg {
		return i, `[^\x00-\x{10FFFF}]`, nil // matches nothing
	}
	b.WriteString("]")
	return i, b.String(), nil
}

func writeRange(b *strings.Builder, lo, hi rune) {
	b.WriteString(classChar(lo))
	if hi != lo {
		b.WriteString("-")
		b.WriteString(classChar(hi))
	}
}

func classChar(r rune) string {
	switch r {
	case '\\', ']', '[', '^', '-':
		return `\` + string(r)
	}
	return string(r)
}
