package main

import (
	"errors"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the contract scripts run `basefs` as a command of this
// test binary.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"basefs": main})
}

// TestContract runs testdata/contract/*.txtar: the user-facing contract
// (../shared/CONTRACT.md) as shell-like scripts that check exact output
// lines and exit statuses.
func TestContract(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/contract",
		Setup: func(e *testscript.Env) error {
			e.Setenv("BASEFS_HOME", e.WorkDir+"/home")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// exits N PROG ARGS...: runs PROG and checks its exit status
			// (stdout and stderr are kept for the next checks).
			"exits": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exits N PROG [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exits: %v", err)
				}
				got := 0
				if err := ts.Exec(args[1], args[2:]...); err != nil {
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("exits: %v", err)
					}
					got = ee.ExitCode()
				}
				if got != want {
					ts.Fatalf("exit status %d, want %d", got, want)
				}
			},
		},
	})
}
