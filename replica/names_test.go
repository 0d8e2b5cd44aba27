package replica

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestControlCharactersRefused: a write that would create a name with a
// control character is refused with a clear error; nothing is written.
func TestControlCharactersRefused(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "fs"), "t", key("root"), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := r.NumEntries()
	for _, p := range []string{"/evil\x1b[2J", "/d\x07/f", "/tab\there", "/del\x7f"} {
		_, err := r.WriteFile(key("root"), p, []byte("x"), WriteOptions{Parents: true})
		if !IsKind(err, Invalid) || !strings.Contains(err.Error(), "control characters") {
			t.Errorf("write %q: %v", p, err)
		}
		if err := r.Mkdir(key("root"), p, 0o755, true, false); !IsKind(err, Invalid) {
			t.Errorf("mkdir %q: %v", p, err)
		}
	}
	if r.NumEntries() != before {
		t.Fatal("a refused write left entries")
	}
}
