package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cmdMan writes the man pages, generated from the command table (the
// same text as help), for packages.
func cmdMan(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "man", 1, 1); err != nil {
		return err
	}
	dir := p.args[0]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	date := "2026"
	write := func(name string, fn func(w io.Writer)) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fn(f)
		return f.Close()
	}
	err := write("basefs.1", func(w io.Writer) {
		fmt.Fprintf(w, ".TH BASEFS 1 %q basefs \"basefs manual\"\n.SH NAME\nbasefs \\- a peer-to-peer, eventually consistent configuration filesystem\n", date)
		fmt.Fprintf(w, ".SH SYNOPSIS\n.B basefs\n[\\-\\-home DIR] [\\-\\-log\\-level LEVEL] COMMAND [ARGS]\n")
		fmt.Fprintf(w, ".SH DESCRIPTION\nNodes share one tree of configuration files; writes are signed, spread by gossip and checked by every node. Paths are written NAME:/path; a bare NAME means NAME:/. The home (\\-\\-home, then $BASEFS_HOME, then ~/.basefs) holds keys, stores and the control socket.\n")
		fmt.Fprintf(w, ".SH COMMANDS\n")
		for _, c := range commands() {
			if !c.hidden {
				fmt.Fprintf(w, ".TP\n.BR basefs\\-%s (1)\n%s.\n", c.name, roff(c.summary))
			}
		}
		fmt.Fprintf(w, ".SH EXIT STATUS\n0 success; 2 bad usage; 1 any other failure (one line on standard error beginning \"basefs: \"). status \\-\\-check: 3 while the node catches up, 4 when no node runs.\n")
	})
	if err != nil {
		return err
	}
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		c := c
		err := write("basefs-"+c.name+".1", func(w io.Writer) {
			fmt.Fprintf(w, ".TH BASEFS\\-%s 1 %q basefs \"basefs manual\"\n", strings.ToUpper(c.name), date)
			fmt.Fprintf(w, ".SH NAME\nbasefs\\-%s \\- %s\n", c.name, roff(c.summary))
			fmt.Fprintf(w, ".SH SYNOPSIS\n.B basefs %s\n%s\n", c.name, roff(c.args))
			if len(c.flags) > 0 {
				fmt.Fprintf(w, ".SH OPTIONS\n")
				specs := append([]flagSpec(nil), c.flags...)
				sort.Slice(specs, func(i, j int) bool { return specs[i].name < specs[j].name })
				for _, f := range specs {
					name := "\\-\\-" + f.name
					if f.short != "" {
						name = "\\-" + f.short + ", " + name
					}
					if f.value {
						name += " " + f.valueFor
					}
					fmt.Fprintf(w, ".TP\n.B %s\n%s\n", roff(name), roff(f.help))
				}
			}
			fmt.Fprintf(w, ".SH SEE ALSO\n.BR basefs (1)\n")
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// roff escapes text for a man page line.
func roff(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "-", "\\-")
	s = strings.ReplaceAll(s, "\\\\-", "\\-")
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}
