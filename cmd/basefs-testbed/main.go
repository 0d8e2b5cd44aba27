// Command basefs-testbed runs basefs's experiments: the real gossip and sync
// code over a simulated network (package testbed), or real basefs
// processes on loopback, and writes data.csv, plot.svg and report.md for
// each. It is a separate binary so that the product, cmd/basefs, does not
// link the simulator. See testbed/results/README.md.
//
//	basefs-testbed convergence|traffic|faults|real|all|summary [options]
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

func main() {
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	p, err := parseArgs(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil {
		err = cmdTestbed(env, p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "basefs-testbed: "+strings.Join(strings.Fields(err.Error()), " "))
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// cliEnv is what an experiment may touch of the process.
type cliEnv struct {
	stdout, stderr io.Writer
	// stopped, when set, stops the experiments (tests).
	stopped <-chan struct{}
}

// flagSpec declares one flag of the table.
type flagSpec struct {
	name     string
	short    string
	value    bool
	help     string
	valueFor string
}

// parsed is a command line after parsing.
type parsed struct {
	fs   *pflag.FlagSet
	args []string
}

func (p *parsed) has(name string) bool { return p.fs.Changed(name) }

func (p *parsed) get(name string) string {
	v, _ := p.fs.GetString(name)
	return v
}

// raw reconstructs the flags and arguments as given (for reports).
func (p *parsed) raw() []string {
	out := append([]string(nil), p.args...)
	for _, spec := range testbedFlags {
		switch {
		case !p.has(spec.name):
		case spec.value:
			out = append(out, "--"+spec.name, p.get(spec.name))
		default:
			out = append(out, "--"+spec.name)
		}
	}
	return out
}

// parseArgs parses an experiment's command line against testbedFlags.
func parseArgs(args []string) (*parsed, error) {
	fs := pflag.NewFlagSet("basefs-testbed", pflag.ContinueOnError)
	fs.SortFlags = true
	for _, f := range testbedFlags {
		if f.value {
			fs.StringP(f.name, f.short, "", f.help)
		} else {
			fs.BoolP(f.name, f.short, false, f.help)
		}
	}
	fs.Usage = func() {
		fmt.Fprintln(os.Stdout, "usage: basefs-testbed convergence|traffic|faults|real|all|summary [options]\n\noptions:")
		fmt.Fprint(os.Stdout, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	return &parsed{fs: fs, args: fs.Args()}, nil
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// basefsBinary is the basefs binary the real-process experiments run:
// flag, else a basefs beside this binary, else basefs on PATH.
func basefsBinary(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "basefs")
		if st, err := os.Stat(beside); err == nil && !st.IsDir() {
			return beside, nil
		}
	}
	if p, err := exec.LookPath("basefs"); err == nil {
		return p, nil
	}
	return "", errors.New("real: no basefs binary found beside this one or on PATH; give --binary PATH (go build ./cmd/basefs)")
}
