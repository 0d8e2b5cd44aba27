package main

import (
	"testing"

	"github.com/basefs/basefs/replica"
)

// TestLocalBindSkipsComments: a commented /.cluster line still names this
// node's address, so run needs no --bind.
func TestLocalBindSkipsComments(t *testing.T) {
	c := newCLI(t)
	c.setup()
	c.ok("# nodes\n127.0.0.1:7946 # this machine\n10.9.9.9:7946\n", "write", "demo:/.cluster")
	env := &cliEnv{home: c.home}
	r, err := replica.Open(env.fsDir("demo"), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, ok := localBind(r); !ok || got != "127.0.0.1:7946" {
		t.Fatalf("localBind = %q, %v", got, ok)
	}
}
