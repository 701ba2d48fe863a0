//go:build !linux

package daemon

// totalRAM does not know the RAM of machines other than Linux ones (meshd's
// routers all run Linux): memory_limit = "auto" sets no limit there.
func totalRAM() (uint64, bool) { return 0, false }
