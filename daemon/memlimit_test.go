package daemon

import (
	"math"
	"runtime/debug"
	"testing"
)

// ApplyMemoryLimit sets the runtime's limit, lifts it for "off", and
// leaves GOMEMLIMIT's alone.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "")

	if got := ApplyMemoryLimit(512 << 20); got != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Errorf("ApplyMemoryLimit(512MiB) = %v, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}
	if got := ApplyMemoryLimit(0); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("ApplyMemoryLimit(off) = %v, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}

	auto := ApplyMemoryLimit(MemoryLimitAuto)
	switch total, ok := totalRAM(); {
	case !ok:
		if auto != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
			t.Errorf("ApplyMemoryLimit(auto) where the RAM is not known = %v, runtime limit %d; want no limit", auto, debug.SetMemoryLimit(-1))
		}
	default:
		ram := ByteSize(total)
		if auto < autoFloor || auto > max(ram/4, autoFloor) || auto < ram/4-1<<20 || debug.SetMemoryLimit(-1) != int64(auto) {
			t.Errorf("ApplyMemoryLimit(auto) = %v with %v of RAM, runtime limit %d; want a quarter of the RAM", auto, ram, debug.SetMemoryLimit(-1))
		}
	}

	// The variable is read by the runtime at start; here the limit it set
	// is imitated.
	debug.SetMemoryLimit(768 << 20)
	t.Setenv("GOMEMLIMIT", "768MiB")
	if got := ApplyMemoryLimit(512 << 20); got != 768<<20 || debug.SetMemoryLimit(-1) != 768<<20 {
		t.Errorf("with GOMEMLIMIT set, ApplyMemoryLimit(512MiB) = %v, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}
}

// ApplyGCPercent paces the collector at smallGCPercent under a small
// limit, at the runtime's pace otherwise, and leaves GOGC's alone.
func TestApplyGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	t.Setenv("GOGC", "")
	for _, c := range []struct {
		limit ByteSize
		want  int
	}{
		{16 << 20, smallGCPercent},
		{smallLimit, smallGCPercent},
		{smallLimit + 1<<20, defaultGCPercent},
		{0, defaultGCPercent},
	} {
		if got := ApplyGCPercent(c.limit); got != c.want || debug.SetGCPercent(c.want) != c.want {
			t.Errorf("ApplyGCPercent(%v) = %d, want %d in force", c.limit, got, c.want)
		}
	}
	// The variable is read by the runtime at start; here the pace it set
	// is imitated.
	debug.SetGCPercent(200)
	t.Setenv("GOGC", "200")
	if got := ApplyGCPercent(16 << 20); got != 200 || debug.SetGCPercent(200) != 200 {
		t.Errorf("with GOGC=200, ApplyGCPercent(16MiB) = %d, want 200 in force", got)
	}
}
