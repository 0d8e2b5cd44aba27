// Command basefs is the peer-to-peer configuration filesystem's command line:
// keys, creating and fetching filesystems, file operations, history, and
// running a node. See README.md and ../shared/CONTRACT.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/basefs/basefs/replica"
)

func main() {
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(env, os.Args[1:]))
}

// cliEnv is what a command may touch of the process: its streams and
// environment. Tests run commands in-process with their own.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	home           string
	logLevel       slog.Level
	logLevelSet    bool // --log-level was given
	// stopped, when set, stops a long-running command (tests).
	stopped <-chan struct{}
}

// lockedWriter serializes writes to w; it is safe for concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// command is one subcommand.
type command struct {
	name    string
	args    string // usage after the name
	summary string
	flags   []flagSpec
	run     func(env *cliEnv, p *parsed) error
	// hidden commands are left out of help (tools for packagers).
	hidden bool
	// complete completes the positional arguments; nil completes
	// NAME:/path targets.
	complete func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)
}

var keyFlag = flagSpec{name: "key", value: true, valueFor: "PATH", help: "private key to sign with (default HOME/id_ed25519)"}

// commands returns the command table, in the order help lists them.
func commands() []*command {
	return []*command{
		{name: "genkey", args: "[--key PATH] [--force]", summary: "create a new ed25519 key pair and print its fingerprint",
			flags: []flagSpec{keyFlag, {name: "force", help: "replace an existing key"}}, run: cmdGenkey},
		{name: "fingerprint", args: "[--key PATH | PUBFILE]", summary: "print a key's fingerprint",
			flags: []flagSpec{keyFlag}, run: cmdFingerprint},
		{name: "bootstrap", args: "NAME --addr HOST:PORT[,HOST:PORT...] [--key PATH]", summary: "create filesystem NAME with your key as its root authority",
			flags: []flagSpec{keyFlag, {name: "addr", value: true, repeat: true, valueFor: "HOST:PORT,...", help: "node addresses written to /.cluster"}}, run: cmdBootstrap},
		{name: "ls", args: "[-l] NAME[:/path]", summary: "list a directory",
			flags: []flagSpec{{name: "long", short: "l", help: "mode, size, time and name"}, {name: "json", help: "JSON output"},
				{name: "all", short: "a", help: "accepted for habit: every name is always listed"}}, run: cmdLs},
		{name: "cat", args: "NAME:/path[@ENTRY]", summary: "print a file (@ENTRY: the version that entry wrote)", run: cmdCat},
		{name: "write", args: "NAME:/path [--mode MODE] [--key PATH] < content", summary: "write stdin to a file, creating missing directories",
			flags: []flagSpec{keyFlag, {name: "mode", value: true, valueFor: "MODE", help: "permission bits, octal"}}, run: cmdWrite},
		{name: "mkdir", args: "[-p] NAME:/path [--key PATH]", summary: "create a directory",
			flags: []flagSpec{keyFlag, {name: "parents", short: "p", help: "create missing parents; no error if it exists"}, {name: "mode", value: true, valueFor: "MODE", help: "permission bits, octal"}}, run: cmdMkdir},
		{name: "rm", args: "[-rf] NAME:/path [--key PATH]", summary: "remove a file, or a directory with -r",
			flags: []flagSpec{keyFlag, {name: "recursive", short: "r", help: "remove a directory and everything in it"}, {name: "R", help: "same as -r"},
				{name: "force", short: "f", help: "no error when the path does not exist"}}, run: cmdRm},
		{name: "mv", args: "NAME:/from NAME:/to [--key PATH]", summary: "move or rename; into /to when it is a directory",
			flags: []flagSpec{keyFlag}, run: cmdMv},
		{name: "ln", args: "-s TARGET NAME:/path | NAME:/existing NAME:/path [--key PATH]", summary: "make a symbolic link (-s) or a hard link",
			flags: []flagSpec{keyFlag, {name: "symbolic", short: "s", help: "symbolic link"}}, run: cmdLn},
		{name: "chmod", args: "MODE NAME:/path [--key PATH]", summary: "change permission bits (octal, e.g. 640)",
			flags: []flagSpec{keyFlag}, run: cmdChmod},
		{name: "chown", args: "USER[:GROUP] NAME:/path [--key PATH]", summary: "set owner and group by name; every node maps the names to its own ids",
			flags: []flagSpec{keyFlag}, run: cmdChown},
		{name: "grant", args: "NAME:/path PUBFILE [--key PATH]", summary: "give a key write authority over /path and below",
			flags: []flagSpec{keyFlag}, run: cmdGrant},
		{name: "revoke", args: "NAME:/path FINGERPRINT [--key PATH]", summary: "take a key's authority over /path away",
			flags: []flagSpec{keyFlag}, run: cmdRevoke},
		{name: "log", args: "NAME[:/path] [--json]", summary: "history of /path and below, newest first",
			flags: []flagSpec{{name: "json", help: "JSON output"}}, run: cmdLog},
		{name: "revert", args: "NAME:/path ENTRY [--dry-run] [--key PATH]", summary: "make /path what it was at ENTRY (a hash prefix)",
			flags: []flagSpec{keyFlag, {name: "dry-run", help: "list what would change; write nothing"}, {name: "json", help: "--dry-run: JSON output"}}, run: cmdRevert},
		{name: "grants", args: "NAME[:/path] [--json]", summary: "who may write at /path and below",
			flags: []flagSpec{{name: "json", help: "JSON output"}}, run: cmdGrants},
		{name: "conflicts", args: "NAME[:/path] [--json]", summary: "branches that lost a conflict, and hidden paths",
			flags: []flagSpec{{name: "json", help: "JSON output"}}, run: cmdConflicts},
		{name: "status", args: "NAME [--json] [--check]", summary: "this node's state of NAME",
			flags: []flagSpec{{name: "json", help: "JSON output"},
				{name: "check", help: "exit 0 only when a node runs and is in sync; 3 while it catches up, 4 when no node runs"}}, run: cmdStatus},
		{name: "verify", args: "NAME", summary: "re-check every hash, signature and content in the local store", run: cmdVerify},
		{name: "get", args: "NAME HOST:PORT [--encrypt KEYFILE] [--id HASH]", summary: "fetch filesystem NAME from a running node, verifying all of it",
			flags: []flagSpec{{name: "encrypt", value: true, valueFor: "KEYFILE", help: "the cluster secret, when the cluster encrypts (as run --encrypt)"},
				{name: "id", value: true, valueFor: "HASH", help: "refuse a filesystem whose id does not start with HASH (8+ hex digits; bootstrap and status print it)"}}, run: cmdGet},
		{name: "gossip-key", args: "generate FILE | NAME install|use|remove KEY | NAME list", summary: "make and rotate the shared gossip encryption key (through the running node)",
			flags: []flagSpec{{name: "force", help: "generate: replace an existing file"}}, run: cmdGossipKey},
		{name: "demo", args: "[--dir DIR] [--for DURATION]", summary: "start a local 3-node cluster, write sample configuration and watch it converge",
			flags: []flagSpec{{name: "dir", value: true, valueFor: "DIR", help: "where the demo homes go (default: a new temporary directory)"},
				{name: "for", value: true, valueFor: "DURATION", help: "stop after DURATION instead of waiting for Ctrl-C"}}, run: cmdDemo},
		{name: "run", args: "NAME [--bind HOST:PORT] [--join HOST:PORT,...] [--handler [GLOB=]SCRIPT]... [--mount DIR] [--key PATH]", summary: "run a node in the foreground until interrupted",
			flags: runFlags, run: cmdRun},
		{name: "mount", args: "NAME DIR [run options]", summary: "run a node with the filesystem mounted at DIR; unmounts on exit",
			flags: runFlags, run: cmdMount},
		{name: "version", args: "[--json]", summary: "print the version, commit, Go version and protocol versions (also --version)",
			flags: []flagSpec{{name: "json", help: "JSON output"}}, run: cmdVersion},
		{name: "man", args: "DIR", summary: "write man pages (basefs.1 and basefs-COMMAND.1) into DIR", run: cmdMan, hidden: true},
		{name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script (e.g. source <(basefs completion bash))",
			run: cmdCompletion, complete: completeShells},
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run runs one command line and returns the exit status.
func run(env *cliEnv, args []string) (status int) {
	// Loggers made by env.logger each have their own handler; the node's
	// goroutines and the command write through them at once.
	if _, ok := env.stderr.(*lockedWriter); !ok {
		env.stderr = &lockedWriter{w: env.stderr}
	}
	defer func() {
		if r := recover(); r != nil {
			if env.getenv("BASEFS_DEBUG") != "" {
				panic(r)
			}
			fmt.Fprintf(env.stderr, "basefs: internal error: %v (this is a bug; BASEFS_DEBUG=1 shows where)\n", oneLine(fmt.Sprint(r)))
			status = 1
		}
	}()
	err := dispatch(env, args)
	if err == nil {
		return 0
	}
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	fmt.Fprintln(env.stderr, "basefs: "+oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// exitStatus is a command's answer given as its exit status alone (status
// --check), with nothing printed to stderr.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func dispatch(env *cliEnv, args []string) error {
	root := newRoot(env)
	root.SetArgs(args)
	return root.Execute()
}

func printHelp(w io.Writer, topic string) error {
	if topic != "" {
		c := findCommand(topic)
		if c == nil {
			return usagef("no help for %q: unknown command", topic)
		}
		fmt.Fprintf(w, "usage: basefs [--home DIR] %s %s\n\n%s.\n", c.name, c.args, c.summary)
		if len(c.flags) > 0 {
			fmt.Fprintln(w, "\noptions:")
			specs := append([]flagSpec(nil), c.flags...)
			sort.Slice(specs, func(i, j int) bool { return specs[i].name < specs[j].name })
			for _, f := range specs {
				name := "--" + f.name
				if f.short != "" {
					name = "-" + f.short + ", " + name
				}
				if f.value {
					name += " " + f.valueFor
				}
				fmt.Fprintf(w, "  %-24s %s\n", name, f.help)
			}
		}
		return nil
	}
	fmt.Fprintln(w, "basefs: a peer-to-peer, eventually consistent configuration filesystem")
	fmt.Fprintln(w, "\nusage: basefs [--home DIR] [--log-level LEVEL] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nPaths are written NAME:/path; a bare NAME means NAME:/.")
	fmt.Fprintln(w, "'basefs help COMMAND' shows a command's arguments and options.")
	return nil
}

// resolveHome picks the home directory: --home, then $BASEFS_HOME, then
// ~/.basefs.
func resolveHome(flagValue string, getenv func(string) string) (string, error) {
	h := flagValue
	if h == "" {
		h = getenv("BASEFS_HOME")
	}
	if h == "" {
		u, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot find your home directory (set --home or BASEFS_HOME): %v", err)
		}
		h = filepath.Join(u, ".basefs")
	}
	return filepath.Abs(h)
}

// fsDir is where filesystem name is stored in the home.
func (env *cliEnv) fsDir(name string) string { return filepath.Join(env.home, "fs", name) }

func (env *cliEnv) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: env.logLevel}))
}

// replicaOptions are the options every command opens a replica with.
func (env *cliEnv) replicaOptions() replica.Options {
	return replica.Options{Logger: env.logger()}
}
