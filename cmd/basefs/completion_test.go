package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletePaths: the completion of NAME:/path arguments lists the
// filesystems of the home, then the paths inside one.
func TestCompletePaths(t *testing.T) {
	c := newCLI(t)
	c.setup()
	c.ok("x", "write", "demo:/etc/app.conf")
	c.ok("", "mkdir", "demo:/etc/nginx")
	c.ok("y", "write", "demo:/motd")

	out := c.ok("", "__complete", "cat", "de")
	if !strings.Contains(out, "demo:/\n") {
		t.Fatalf("completing a name: %q", out)
	}
	out = c.ok("", "__complete", "cat", "demo:/et")
	if !strings.Contains(out, "demo:/etc/\n") || strings.Contains(out, "motd") {
		t.Fatalf("completing demo:/et: %q", out)
	}
	out = c.ok("", "__complete", "cat", "demo:/etc/")
	for _, want := range []string{"demo:/etc/app.conf\n", "demo:/etc/nginx/\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("completing demo:/etc/: %q lacks %q", out, want)
		}
	}
	out = c.ok("", "__complete", "help", "wr")
	if !strings.Contains(out, "write\n") {
		t.Fatalf("completing a command for help: %q", out)
	}
}

// TestCompletionScripts: each shell's script is printed, and bash accepts
// the script and registers it for basefs.
func TestCompletionScripts(t *testing.T) {
	c := newCLI(t)
	for shell, want := range map[string]string{"bash": "__start_basefs", "zsh": "#compdef basefs", "fish": "complete -c basefs"} {
		if out := c.ok("", "completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
	c.fails(2, "unknown shell", "", "completion", "tcsh")
	c.fails(2, "give one shell", "", "completion")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "basefs.bash")
	if err := os.WriteFile(script, []byte(c.ok("", "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bash, "-c", "source "+script+" && complete -p basefs").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "__start_basefs basefs") {
		t.Fatalf("bash: %v: %s", err, out)
	}
}

// TestBashTabCompletion: in bash (with bash-completion, as on a Debian
// desktop), TAB after `basefs cat demo:/et` offers /etc/ — bash splits
// the word at the colon, so the reply is the part after it.
func TestBashTabCompletion(t *testing.T) {
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("bash-completion is not installed (scripts/deps.sh installs it)")
	}
	bin := basefsBinary(t)
	c := newCLI(t)
	c.setup()
	c.ok("x", "write", "demo:/etc/app.conf")
	script := `source ` + lib + `
source <(basefs completion bash)
COMP_LINE="basefs cat demo:/et"; COMP_POINT=${#COMP_LINE}
COMP_WORDS=(basefs cat demo : /et); COMP_CWORD=4
__start_basefs basefs /et : 2>/dev/null
printf "[%s]\n" "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "BASEFS_HOME="+c.home)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "[/etc/]" {
		t.Fatalf("bash completion of 'basefs cat demo:/et': %v: %q", err, out)
	}
}
