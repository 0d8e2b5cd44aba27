// Command opsgen writes control/api_gen.go from ops/api.go. It is run by
// `go generate ./control` (from the control directory).
package main

import (
	"fmt"
	"os"

	"github.com/basefs/basefs/internal/opsgen"
)

func main() {
	src, err := os.ReadFile("../ops/api.go")
	if err == nil {
		var out []byte
		if out, err = opsgen.Generate(src); err == nil {
			err = os.WriteFile("api_gen.go", out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "opsgen:", err)
		os.Exit(1)
	}
}
