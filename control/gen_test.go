package control

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/basefs/basefs/internal/opsgen"
	"github.com/basefs/basefs/ops"
)

// TestGeneratedCurrent: api_gen.go is what the generator makes of
// ops/api.go today (run `go generate ./control` after changing the API).
func TestGeneratedCurrent(t *testing.T) {
	src, err := os.ReadFile("../ops/api.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := opsgen.Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("api_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("control/api_gen.go is stale: run go generate ./control")
	}
}

// TestNoKeyMaterialOnTheWire: a Signer crosses the socket as a key path;
// a key held in memory is never encoded.
func TestNoKeyMaterialOnTheWire(t *testing.T) {
	k := testKey("secret")
	b, err := json.Marshal(writeFileParams{S: ops.KeySigner(k), Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{k.Seed(), k} {
		enc, _ := json.Marshal(secret)
		if bytes.Contains(b, enc[1:len(enc)-1]) {
			t.Fatalf("request %s carries key material", b)
		}
	}
	b, _ = json.Marshal(writeFileParams{S: ops.FileSigner("/home/op/id_ed25519")})
	if !bytes.Contains(b, []byte(`"key_path":"/home/op/id_ed25519"`)) {
		t.Fatalf("request %s lacks the key path", b)
	}
}
