package ops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/replica"
)

func TestLocalSignsWithTheKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	key, err := log.GenerateKeyFile(keyPath, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.Create(filepath.Join(dir, "fs"), "ops", key, nil, replica.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var api API = Local{R: r}
	h, err := api.WriteFile(FileSigner(keyPath), "/etc/a", []byte("x"), replica.WriteOptions{Parents: true})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := api.Log("/etc/a")
	if err != nil || len(recs) == 0 || recs[0].Hash != h.String() {
		t.Fatalf("log of the write: %+v, %v (write returned %s)", recs, err, h)
	}
	if _, err := api.WriteFile(FileSigner(filepath.Join(dir, "missing")), "/b", nil, replica.WriteOptions{}); err == nil || !strings.Contains(err.Error(), "no key at") {
		t.Fatalf("missing key file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("junk"), 0o600)
	if err := api.Mkdir(FileSigner(filepath.Join(dir, "junk")), "/d", MkdirOptions{}); err == nil || !strings.Contains(err.Error(), "cannot read key") {
		t.Fatalf("junk key file: %v", err)
	}
	if _, err := api.GossipKey("list", ""); err == nil || !strings.Contains(err.Error(), "needs a running node") {
		t.Fatalf("gossip key offline: %v", err)
	}
	st, err := api.Status()
	if err != nil || st.Running || st.Members == nil {
		t.Fatalf("offline status: %+v %v", st, err)
	}
}
