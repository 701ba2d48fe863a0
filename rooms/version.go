package rooms

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"meshd/rooms/wire"
)

const (
	// versionWarnEvery is how often the log names one source of packets
	// of another protocol version: often enough to be seen, rarely enough
	// that a neighbour left on an old meshd does not fill the log.
	versionWarnEvery = time.Minute
	// maxVersionSources bounds the sources remembered, so that packets
	// from many (or spoofed) addresses cannot grow the map; beyond it a
	// new source is counted but not named until old entries lapse.
	maxVersionSources = 64
)

// VersionWarner counts packets whose header names another meshd protocol
// version, and tells the user: daemons of different versions do not
// interoperate, and counting their packets as malformed would leave a
// mesh half upgraded silent. Safe for concurrent use.
type VersionWarner struct {
	stats *Stats
	log   *slog.Logger

	mu   sync.Mutex
	last map[netip.Addr]time.Time // when each source was last named in the log
}

// NewVersionWarner returns a VersionWarner counting into stats; a nil log
// discards the warnings.
func NewVersionWarner(stats *Stats, log *slog.Logger) *VersionWarner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &VersionWarner{stats: stats, log: log, last: make(map[netip.Addr]time.Time)}
}

// Heard counts a packet from src whose header names protocol version v
// (wire.PeerVersion) and logs a warning, at most once per
// versionWarnEvery per source address. Only the warning allocates.
func (w *VersionWarner) Heard(v byte, src netip.Addr, now time.Time) {
	w.stats.VersionMismatch.Add(1)
	src = src.Unmap()
	w.mu.Lock()
	last, ok := w.last[src]
	warn := !ok || now.Sub(last) >= versionWarnEvery
	if warn && !ok && len(w.last) >= maxVersionSources {
		for a, t := range w.last {
			if now.Sub(t) >= versionWarnEvery {
				delete(w.last, a)
			}
		}
		warn = len(w.last) < maxVersionSources
	}
	if warn {
		w.last[src] = now
	}
	w.mu.Unlock()
	if warn {
		w.log.Warn(fmt.Sprintf("heard meshd protocol v%d from %v; this meshd speaks v%d: run the same meshd version on both", v, src, wire.Version),
			"from", src, "version", v)
	}
}
