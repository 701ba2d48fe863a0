package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// bins holds the freshly built binaries.
var bins struct {
	dir     string
	meshd   string
	meshctl string
	err     error
}

func TestMain(m *testing.M) {
	if helper := os.Getenv(helperEnv); helper != "" {
		os.Exit(runHelper(helper))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.dir = dir
	bins.meshd = filepath.Join(dir, "meshd")
	bins.meshctl = filepath.Join(dir, "meshctl")
	if canRun() == "" {
		bins.err = build(dir)
	}

	// A test killed by a signal runs no t.Cleanup: remove its namespaces
	// here instead, so that no run leaves any behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		removeAllNamespaces()
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "e2e: %v: namespaces removed\n", s)
		os.Exit(2)
	}()
	code := m.Run()
	removeAllNamespaces()
	return code
}

func build(dir string) error {
	// meshd runs with the race detector when the tests do: a race makes it
	// exit non-zero, which the tests check. meshctl does not, because a
	// race-enabled binary lingers a second at exit and the suite runs
	// meshctl hundreds of times.
	steps := [][]string{{"build", "-o", dir, "meshd/cmd/meshctl"}}
	if raceEnabled {
		steps = append(steps, []string{"build", "-race", "-o", dir, "meshd/cmd/meshd"})
	} else {
		steps = append(steps, []string{"build", "-o", dir, "meshd/cmd/meshd"})
	}
	// MESHD_BUILD_TAGS builds meshd as a router would run it, e.g.
	// "noasm": reedsolomon without SIMD, as on mips and 32-bit arm.
	if tags := os.Getenv("MESHD_BUILD_TAGS"); tags != "" {
		for i := range steps {
			steps[i] = slices.Insert(steps[i], 1, "-tags", tags)
		}
	}
	for _, args := range steps {
		cmd := exec.Command("go", args...)
		// Without cgo, as shipped: static binaries, as on a router. With
		// it, meshd would link libc and load NSS modules to look up
		// socket_group, which cost it 2.4 MiB of resident pages in
		// TestBenchRSS. The race detector needs cgo.
		if !slices.Contains(args, "-race") {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %v: %w", args, err)
		}
	}
	return nil
}

// canRun returns why the suite cannot run here, or "".
func canRun() string {
	if os.Geteuid() != 0 {
		return "the end-to-end suite needs root to make network namespaces (run it as root, e.g. sudo go test ./e2e)"
	}
	for _, tool := range []string{"ip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the end-to-end suite needs %q (iproute2) on PATH", tool)
		}
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		return fmt.Sprintf("cannot list network namespaces: %v", err)
	}
	return ""
}

// requireE2E skips the test when the suite cannot run here, or fails it if
// MESHD_E2E=require.
func requireE2E(t *testing.T) {
	t.Helper()
	if why := canRun(); why != "" {
		if requireMode() {
			t.Fatalf("MESHD_E2E=require but %s", why)
		}
		t.Skip(why)
	}
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// requireMode reports whether CI asked for the suite to run, not skip.
func requireMode() bool { return os.Getenv("MESHD_E2E") == "require" }
