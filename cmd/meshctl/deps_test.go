package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps meshctl a thin front end: linking the daemon's
// transport, FEC or room code into it would bloat it and blur the API
// boundary.
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
		if pkg != "meshd" && !strings.HasPrefix(pkg, "meshd/") {
			continue
		}
		if pkg != "meshd/ctl" && pkg != "meshd/cmd/meshctl" {
			t.Errorf("meshctl depends on %s; it may import only meshd/ctl and the standard library", pkg)
		}
	}
}
