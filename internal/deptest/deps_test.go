package deptest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowed lists, for each meshd package, the meshd packages it may import
// (directly or not). A package missing here fails the test, so a new
// package has to take its place in the layering on purpose.
var allowed = map[string][]string{
	"meshd/cmd/meshctl":       {"meshd/ctl"},
	"meshd/cmd/meshd":         {"meshd/daemon", "meshd/ctl", "meshd/ctl/ctlserver", "meshd/mcast", "meshd/rooms", "meshd/rooms/secure", "meshd/rooms/wire", "meshd/rooms/roomlog", "meshd/fec"},
	"meshd/daemon":            {"meshd/ctl", "meshd/ctl/ctlserver", "meshd/mcast", "meshd/rooms", "meshd/rooms/secure", "meshd/rooms/wire", "meshd/rooms/roomlog", "meshd/fec"},
	"meshd/ctl":               {},
	"meshd/ctl/ctlserver":     {"meshd/ctl"},
	"meshd/ctl/ctltest":       {"meshd/ctl", "meshd/ctl/ctlserver"},
	"meshd/rooms":             {"meshd/rooms/secure", "meshd/rooms/wire", "meshd/fec"},
	"meshd/rooms/secure":      {},
	"meshd/rooms/roomlog":     {},
	"meshd/rooms/wire":        {},
	"meshd/mcast":             {},
	"meshd/mcast/memnet":      {},
	"meshd/fec":               {},
	"meshd/e2e":               {},
	"meshd/internal/leaktest": {},
	"meshd/internal/deptest":  {},
}

func TestLayering(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "meshd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		ok, known := allowed[pkg]
		if !known {
			t.Errorf("%s is not in the layering table of internal/deptest: add it with the meshd packages it may import", pkg)
			continue
		}
		for _, dep := range deps {
			if strings.HasPrefix(dep, "meshd/") && !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s, which the layering forbids", pkg, dep)
			}
		}
	}
}
