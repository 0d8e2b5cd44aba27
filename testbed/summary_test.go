package testbed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	os.MkdirAll(objects, 0o755)
	writeCSV(filepath.Join(objects, "data.csv"), []string{"value", "kind", "converged", "seconds"}, [][]string{
		{"1", "basefs", "true", "0.5"}, {"1", "basefs", "true", "0.7"}, {"1", "serf", "true", "0.5"}, {"1", "serf", "true", "0.6"},
	})
	os.WriteFile(filepath.Join(objects, "report.md"), []byte("# Convergence vs objects\n\nCommand:\n\n```sh\nbasefs-testbed convergence --vary objects\n```\n"), 0o644)
	faults := filepath.Join(dir, "faults")
	os.MkdirAll(faults, 0o755)
	writeCSV(filepath.Join(faults, "data.csv"), []string{"seed", "violations"}, [][]string{{"1", "0"}, {"2", "1"}})
	if err := WriteSummary(dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, want := range []string{"p50 0.60 s vs 0.55 s (**1.09×**)", "max 0.70 s vs 0.60 s (**1.17×**)", "**met**",
		"**1** violating schedules of 2", "**not met**", "`basefs-testbed convergence --vary objects`"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("README lacks %q:\n%s", want, b)
		}
	}
}
