package node

import (
	"reflect"
	"testing"
)

func TestParseClusterFile(t *testing.T) {
	in := "# the cluster\n127.0.0.1:7946 # this one\n\n  10.0.0.2:7946  \n#10.0.0.3:7946\n"
	want := []string{"127.0.0.1:7946", "10.0.0.2:7946"}
	if got := ParseClusterFile([]byte(in)); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
