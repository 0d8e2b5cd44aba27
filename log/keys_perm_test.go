package log

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrivateKeyReadableByOthersRefused: as ssh does, a private key file
// that group or others can read is refused, with the fix named.
func TestPrivateKeyReadableByOthersRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if _, err := GenerateKeyFile(p, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(p); err != nil {
		t.Fatalf("a 0600 key: %v", err)
	}
	os.Chmod(p, 0o644)
	if _, err := ReadPrivateKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a 0644 key: %v", err)
	}
}
