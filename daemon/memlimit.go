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
	// MemoryLimitAuto (memory_limit = "auto", the default) is a quarter of
	// the machine's RAM, at least autoFloor: out of the way on a machine
	// with memory to spare, where collecting more often would only cost
	// CPU, and autoFloor on a router of 64 MB.
	MemoryLimitAuto ByteSize = -1
	// autoFloor is the auto limit's least: a host of 500 sessions (10
	// rooms of 50, TestBenchRSS) keeps about 9 MiB of runtime memory live
	// (the heap, 3 MiB of the collector's own, what is left of stacks),
	// and paced at smallGCPercent it holds under 15 MiB of RSS at no cost
	// in CPU; limits of 13 MiB and below cost it CPU (docs/BENCHMARKS.md,
	// "RSS: one poller for idle sessions"), and a host's room logs (and a
	// member's event backlogs) grow by a few MiB over a long run.
	autoFloor ByteSize = 16 << 20
	// minMemoryLimit is refused below: an idle meshd holds about 6 MiB
	// of runtime memory (heap, stacks, the collector's own), and a limit
	// under what is live has the collector run without pause.
	minMemoryLimit ByteSize = 8 << 20
)

// With a memory limit of smallLimit or less, memory is what such a
// machine runs out of first, and the collector is paced at smallGCPercent
// (GOGC) rather than the runtime's 100: it collects once the heap has
// grown by half of what is live, not by all of it, well before the limit,
// near which the collector runs without pause. meshd's per-frame paths
// allocate nothing, so a quiet host pays little for it: a host of 500
// sessions (TestBenchRSS, 16 MiB) held 14.1-15.0 MiB instead of 16.0-16.4
// for the same CPU. At full rate it costs CPU (capacity-20: the host 5-15
// % more a line), which is why a machine with memory to spare (a larger
// limit, or none) keeps the runtime's pace (docs/BENCHMARKS.md, "RSS: one
// poller for idle sessions").
const (
	smallLimit       ByteSize = 32 << 20
	smallGCPercent            = 50
	defaultGCPercent          = 100
)

// ApplyGCPercent paces the collector for the memory limit in force
// (ApplyMemoryLimit's; 0 for none), unless the GOGC variable set a pace,
// and returns the pace in force (-1: off). cmd/meshd calls it after
// ApplyMemoryLimit, at start and on SIGHUP.
func ApplyGCPercent(limit ByteSize) int {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	p := defaultGCPercent
	if limit > 0 && limit <= smallLimit {
		p = smallGCPercent
	}
	debug.SetGCPercent(p)
	return p
}

// MemoryLimitFromEnv reports whether the GOMEMLIMIT environment variable
// sets the memory limit: it wins over memory_limit, as an operator's
// override for one run.
func MemoryLimitFromEnv() bool { return os.Getenv("GOMEMLIMIT") != "" }

// ApplyMemoryLimit sets the runtime's soft memory limit to limit, no limit
// for 0, a quarter of the RAM for MemoryLimitAuto, unless GOMEMLIMIT set
// one. It returns the limit in force, 0 for none. The limit is the
// process's: cmd/meshd applies it at start and on SIGHUP, not the daemon,
// of which a test may run several in one process.
func ApplyMemoryLimit(limit ByteSize) ByteSize {
	if limit == MemoryLimitAuto {
		limit = autoMemoryLimit()
	}
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

// autoMemoryLimit is a quarter of the machine's RAM, rounded down to a
// MiB, at least autoFloor; no limit if the kernel does not say.
func autoMemoryLimit() ByteSize {
	ram, ok := totalRAM()
	if !ok {
		return 0
	}
	return max(ByteSize(ram/4)&^(1<<20-1), autoFloor)
}
