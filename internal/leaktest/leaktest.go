// Package leaktest checks, at the end of a test, that the goroutines the
// code under test started have stopped.
package leaktest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Check fails t unless, within a few seconds, no goroutine's stack
// mentions any of substrs (other than the caller's own). Goroutines exit a
// little after the work that ended them, so it polls rather than looking
// once.
func Check(t testing.TB, substrs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := matching(substrs)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func matching(substrs []string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := strings.Split(string(buf), "\n\n")
	var out []string
	for _, g := range stacks[1:] { // the first is the caller's
		for _, s := range substrs {
			if strings.Contains(g, s) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
