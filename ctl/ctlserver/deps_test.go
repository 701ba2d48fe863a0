package ctlserver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the server independent of the daemon, so the API
// can be tested on its own and the daemon cannot leak types into it.
func TestDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if (pkg == "meshd" || strings.HasPrefix(pkg, "meshd/")) && pkg != "meshd/ctl" && pkg != "meshd/ctl/ctlserver" {
			t.Errorf("ctlserver depends on %s; it may import only meshd/ctl", pkg)
		}
	}
}
