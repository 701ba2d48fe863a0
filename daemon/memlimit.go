package daemon

import (
	"math"
	"os"
	"runtime/debug"
)

// The Go runtime's soft memory limit (memory_limit, GOMEMLIMIT semantics):
// past it the garbage collector runs as often as it must to stay under,
// rather than letting the heap grow to twice what is live (GOGC=100)
// before it collects. It is soft: a daemon whose live memory exceeds it
// keeps running, with the collector taking at most about half of the CPU
// (the runtime's limiter), so it bounds the headroom the collector keeps,
// not what meshd needs.
const (
	// DefaultMemoryLimit is sized for a 64 MB router (see
	// docs/BENCHMARKS.md, "Memory of a busy host"): well above what an
	// idle daemon holds, so that the collector does not work for a
	// small host, and below what a host of hundreds of sessions would grow
	// to with GOGC's headroom alone.
	DefaultMemoryLimit = 24 << 20
	// minMemoryLimit is refused below: an idle meshd holds about 6 MiB
	// of runtime memory (heap, stacks, the collector's own), and a limit
	// under what is live has the collector run without pause.
	minMemoryLimit ByteSize = 8 << 20
)

// MemoryLimitFromEnv reports whether the GOMEMLIMIT environment variable
// sets the memory limit: it wins over memory_limit, as an operator's
// override for one run.
func MemoryLimitFromEnv() bool { return os.Getenv("GOMEMLIMIT") != "" }

// ApplyMemoryLimit sets the runtime's soft memory limit to limit, no limit
// for 0, unless GOMEMLIMIT set one. It returns the limit in force, 0 for
// none. The limit is the process's: cmd/meshd applies it at start and on
// SIGHUP, not the daemon, of which a test may run several in one process.
func ApplyMemoryLimit(limit ByteSize) ByteSize {
	l := int64(limit)
	if l == 0 {
		l = math.MaxInt64
	}
	if MemoryLimitFromEnv() {
		l = debug.SetMemoryLimit(-1)
	} else {
		debug.SetMemoryLimit(l)
	}
	if l == math.MaxInt64 {
		return 0
	}
	return ByteSize(l)
}
