package rooms

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/rooms/wire"
)

// syncBuffer is a log destination the test reads while handlers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the log lines written since the last call.
func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.Split(strings.TrimSpace(s.b.String()), "\n")
	s.b.Reset()
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// Every packet of another version is counted; each source is named in the
// log at most once a minute, in words that say what to do.
func TestVersionWarnerRateLimitsPerSource(t *testing.T) {
	stats := new(Stats)
	var buf syncBuffer
	w := NewVersionWarner(stats, slog.New(slog.NewTextHandler(&buf, nil)))
	a := netip.MustParseAddr("10.0.0.1")
	b := netip.MustParseAddr("::ffff:10.0.0.2") // mapped: named as 10.0.0.2
	now := dirNow

	w.Heard(1, a, now)
	got := buf.lines()
	if len(got) != 1 || !strings.Contains(got[0], "level=WARN") ||
		!strings.Contains(got[0], "heard meshd protocol v1 from 10.0.0.1; this meshd speaks v5: run the same meshd version on both") {
		t.Fatalf("first packet logged %q, want one warning naming v1, 10.0.0.1 and v5", got)
	}
	for range 10 {
		w.Heard(1, a, now.Add(59*time.Second))
	}
	if got := buf.lines(); got != nil {
		t.Errorf("repeats within the minute logged %q, want nothing", got)
	}
	w.Heard(4, b, now.Add(59*time.Second))
	if got := buf.lines(); len(got) != 1 || !strings.Contains(got[0], "heard meshd protocol v4 from 10.0.0.2;") {
		t.Errorf("another source logged %q, want its own warning", got)
	}
	w.Heard(1, a, now.Add(time.Minute))
	if got := buf.lines(); len(got) != 1 {
		t.Errorf("a minute later logged %q, want the warning again", got)
	}
	if n := stats.VersionMismatch.Load(); n != 13 {
		t.Errorf("version_mismatch = %d, want 13: every packet counted", n)
	}
}

// Packets from ever new addresses neither grow the warner's memory past
// its bound nor the log past one line per remembered source a minute.
func TestVersionWarnerBounded(t *testing.T) {
	stats := new(Stats)
	var buf syncBuffer
	w := NewVersionWarner(stats, slog.New(slog.NewTextHandler(&buf, nil)))
	now := dirNow
	for i := range 3 * maxVersionSources {
		w.Heard(1, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now)
	}
	if got := len(buf.lines()); got != maxVersionSources {
		t.Errorf("%d sources at once logged %d warnings, want %d", 3*maxVersionSources, got, maxVersionSources)
	}
	if len(w.last) != maxVersionSources {
		t.Errorf("remembers %d sources, want the bound %d", len(w.last), maxVersionSources)
	}
	// Once the remembered ones lapse, a new source is named again.
	w.Heard(1, netip.MustParseAddr("10.2.0.1"), now.Add(versionWarnEvery))
	if got := buf.lines(); len(got) != 1 || !strings.Contains(got[0], "10.2.0.1") {
		t.Errorf("new source after a minute logged %q, want its warning", got)
	}
	if len(w.last) != 1 {
		t.Errorf("remembers %d sources after the others lapsed, want 1", len(w.last))
	}
	if n := stats.VersionMismatch.Load(); n != 3*maxVersionSources+1 {
		t.Errorf("version_mismatch = %d, want %d", n, 3*maxVersionSources+1)
	}
}

// Counting a packet of another version after its source was named does
// not allocate: a neighbour on an old meshd costs the receive path nothing.
func TestVersionWarnerNoAllocs(t *testing.T) {
	w := NewVersionWarner(new(Stats), nil)
	a := netip.MustParseAddr("10.0.0.1")
	w.Heard(1, a, dirNow)
	if n := testing.AllocsPerRun(100, func() { w.Heard(1, a, dirNow) }); n != 0 {
		t.Errorf("Heard allocates %v times a packet, want 0", n)
	}
}

// An announcement from a daemon of the protocol before v2 is counted as a
// version mismatch, not as malformed, and names its source.
func TestDiscoveryCountsVersionMismatch(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	var buf syncBuffer
	r.x.versions = NewVersionWarner(r.stats, slog.New(slog.NewTextHandler(&buf, nil)))
	ann := signTestAnnounce(t, seededIdentity(1), testAnnounce("old", 1))
	old := bytes.Clone(ann)
	old[2] = 1
	r.x.HandlePacket(old, querier)
	wantStats(t, r.stats, map[string]int64{"version_mismatch": 1})
	if got := buf.lines(); len(got) != 1 || !strings.Contains(got[0], "heard meshd protocol v1 from 10.0.0.9;") {
		t.Errorf("logged %q, want the warning naming 10.0.0.9", got)
	}
	// The same announcement at this version is filed.
	r.x.HandlePacket(ann, querier)
	wantStats(t, r.stats, map[string]int64{"version_mismatch": 1, "announce_accepted": 1})
	if old[2] == wire.Version {
		t.Fatal("the test's old version is the current one")
	}
}
