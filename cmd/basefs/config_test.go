package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestConfigFile: run's options from a YAML file; the command line wins;
// unknown options and malformed files are usage errors.
func TestConfigFile(t *testing.T) {
	env := &cliEnv{}
	cmd := env.cobraCommand(findCommand("run"))
	file := filepath.Join(t.TempDir(), "node.yaml")
	os.WriteFile(file, []byte("bind: 10.0.0.1:7946\njoin: [10.0.0.2:7946, 10.0.0.3:7946]\nhandler:\n  - /etc/**=/bin/true\nhandler-initial: true\nsync-interval: 2s\n"), 0o644)
	if err := cmd.Flags().Parse([]string{"demo", "--sync-interval", "9s"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfig(cmd.Flags(), findCommand("run").flags, file); err != nil {
		t.Fatal(err)
	}
	p := parsedFrom(cmd.Flags(), findCommand("run").flags, cmd.Flags().Args())
	if p.get("bind") != "10.0.0.1:7946" || !reflect.DeepEqual(p.all("join"), []string{"10.0.0.2:7946", "10.0.0.3:7946"}) ||
		!reflect.DeepEqual(p.all("handler"), []string{"/etc/**=/bin/true"}) || !p.has("handler-initial") || p.get("sync-interval") != "9s" {
		t.Fatalf("parsed %+v", p.flags)
	}
	for content, want := range map[string]string{
		"frobnicate: 1\n":          `unknown option "frobnicate"`,
		"- just a list\n":          "not a YAML mapping",
		"bind: [a, b]\n":           `option "bind" needs a single value`,
		"handler-initial: maybe\n": `option "handler-initial"`,
	} {
		os.WriteFile(file, []byte(content), 0o644)
		cmd := env.cobraCommand(findCommand("run"))
		err := applyConfig(cmd.Flags(), findCommand("run").flags, file)
		if _, ok := err.(*usageError); !ok || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: %v, want a usage error with %q", content, err, want)
		}
	}
	if err := applyConfig(cmd.Flags(), findCommand("run").flags, filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}
