package deptest

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowed lists, for each meshd package, the meshd packages it may import
// (directly or not). A package missing here fails the test, so a new
// package has to take its place in the layering on purpose.
var allowed = map[string][]string{
	"meshd/cmd/meshctl":           {"meshd/ctl", "meshd/ctl/internal/flatjson"},
	"meshd/cmd/meshd":             {"meshd/daemon", "meshd/ctl", "meshd/ctl/internal/flatjson", "meshd/ctl/ctlserver", "meshd/ctl/ctlserver/httpd", "meshd/mcast", "meshd/rooms", "meshd/rooms/poller", "meshd/rooms/secure", "meshd/rooms/wire", "meshd/rooms/roomlog", "meshd/fec"},
	"meshd/daemon":                {"meshd/ctl", "meshd/ctl/internal/flatjson", "meshd/ctl/ctlserver", "meshd/ctl/ctlserver/httpd", "meshd/mcast", "meshd/rooms", "meshd/rooms/poller", "meshd/rooms/secure", "meshd/rooms/wire", "meshd/rooms/roomlog", "meshd/fec"},
	"meshd/ctl":                   {"meshd/ctl/internal/flatjson"},
	"meshd/ctl/internal/flatjson": {},
	"meshd/ctl/ctlserver":         {"meshd/ctl", "meshd/ctl/internal/flatjson", "meshd/ctl/ctlserver/httpd"},
	"meshd/ctl/ctlserver/httpd":   {},
	"meshd/ctl/ctltest":           {"meshd/ctl", "meshd/ctl/internal/flatjson", "meshd/ctl/ctlserver", "meshd/ctl/ctlserver/httpd"},
	"meshd/rooms":                 {"meshd/rooms/poller", "meshd/rooms/secure", "meshd/rooms/wire", "meshd/fec"},
	"meshd/rooms/poller":          {},
	"meshd/rooms/secure":          {},
	"meshd/rooms/roomlog":         {},
	"meshd/rooms/wire":            {},
	"meshd/mcast":                 {},
	"meshd/mcast/memnet":          {},
	"meshd/fec":                   {},
	"meshd/e2e":                   {},
	"meshd/internal/leaktest":     {},
	"meshd/internal/deptest":      {},
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

// heavy lists standard packages a binary must not link, with the reason.
// meshctl has to fit a router's flash beside meshd: net/http alone brings
// TLS, X.509 and HTTP/2 (about half of meshctl's size), which a client of
// a Unix socket never uses; ctl speaks the little HTTP it needs itself.
// Sessions use Noise (rooms/secure), not TLS: crypto/tls and crypto/x509
// are about 2 MB of meshd (docs/BENCHMARKS.md, "Router builds"). meshd
// needs none of the three: its control API is served by
// ctl/ctlserver/httpd.
var heavy = map[string][]string{
	"meshd/cmd/meshctl":   {"net/http", "crypto/tls", "crypto/x509"},
	"meshd/cmd/meshd":     {"net/http", "crypto/tls", "crypto/x509"},
	"meshd/ctl/ctlserver": {"net/http", "crypto/tls", "crypto/x509"},
	"meshd/rooms":         {"net/http", "crypto/tls", "crypto/x509"},
	"meshd/rooms/secure":  {"net/http", "crypto/tls", "crypto/x509"},
}

func TestNoHeavyDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	for pkg, banned := range heavy {
		// The binary as it is built for a router: no cgo, no test files.
		cmd := exec.Command(gobin, "list", "-deps", pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		for _, b := range banned {
			if slices.Contains(deps, b) {
				t.Errorf("%s links %s; it must not (see heavy in internal/deptest)", pkg, b)
			}
		}
	}
}
