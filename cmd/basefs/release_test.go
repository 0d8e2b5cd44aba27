package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebianPackage builds the .deb with scripts/release.sh and checks
// what it holds: the binary (which runs and names the version), the
// systemd template unit, man pages and completions.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a package: full tier")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg-deb")
	}
	repo, _ := filepath.Abs("../..")
	out := t.TempDir()
	cmd := exec.Command("bash", "scripts/release.sh", "v0.0.1-test")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "DEB_ONLY=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, b)
	}
	deb := filepath.Join(repo, "dist", "basefs_0.0.1-test_amd64.deb")
	defer os.RemoveAll(filepath.Join(repo, "dist"))
	if b, err := exec.Command("dpkg-deb", "-x", deb, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	for _, f := range []string{"usr/bin/basefs", "lib/systemd/system/basefs@.service", "usr/share/man/man1/basefs.1.gz",
		"usr/share/man/man1/basefs-run.1.gz", "usr/share/bash-completion/completions/basefs",
		"usr/share/zsh/vendor-completions/_basefs", "usr/share/fish/vendor_completions.d/basefs.fish"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("package lacks %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(out, "lib/systemd/system/basefs@.service"))
	for _, want := range []string{"ExecStart=/usr/bin/basefs run %i --config /etc/basefs/%i.yaml", "Environment=BASEFS_HOME=/var/lib/basefs", "KillSignal=SIGTERM"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	v, err := exec.Command(filepath.Join(out, "usr/bin/basefs"), "version").Output()
	if err != nil || !strings.HasPrefix(string(v), "basefs v0.0.1-test (commit ") {
		t.Errorf("packaged basefs version: %q %v", v, err)
	}
	info, _ := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Depends").Output()
	if !strings.Contains(string(info), "Version: 0.0.1-test") || !strings.Contains(string(info), "Depends: fuse") {
		t.Errorf("control: %s", info)
	}
}
