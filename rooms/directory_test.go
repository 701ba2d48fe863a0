package rooms

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var dirNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// dirRecorder collects a directory's events.
type dirRecorder struct {
	mu     sync.Mutex
	events []DirectoryEvent
}

func (r *dirRecorder) record(ev DirectoryEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// take returns the events so far and forgets them.
func (r *dirRecorder) take() []DirectoryEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func newTestDirectory() (*Directory, *Stats, *dirRecorder) {
	stats := new(Stats)
	rec := new(dirRecorder)
	return NewDirectory(stats, rec.record), stats, rec
}

// seededIdentity is a signing identity without a session key, which the
// directory does not need and which is slow to make thousands of.
func seededIdentity(n uint64) *Identity {
	seed := make([]byte, ed25519.SeedSize)
	binary.BigEndian.PutUint64(seed, n+1)
	key := ed25519.NewKeyFromSeed(seed)
	return &Identity{Key: key, Pub: key.Public().(ed25519.PublicKey)}
}

// wantStats checks the named counters; the others must be zero.
func wantStats(t *testing.T, s *Stats, want map[string]int64) {
	t.Helper()
	for name, got := range s.Snapshot() {
		if got != want[name] {
			t.Errorf("stats[%q] = %d, want %d", name, got, want[name])
		}
	}
}

func handle(t *testing.T, d *Directory, pkt []byte, now time.Time) {
	t.Helper()
	if err := d.HandleAnnounce(pkt, now); err != nil {
		t.Fatalf("HandleAnnounce = %v, want nil", err)
	}
}

func onlyRoom(t *testing.T, d *Directory) Known {
	t.Helper()
	l := d.List()
	if len(l) != 1 {
		t.Fatalf("List() has %d rooms, want 1", len(l))
	}
	return l[0]
}

func TestDirectoryNewestSerialWins(t *testing.T) {
	d, stats, rec := newTestDirectory()
	id := seededIdentity(1)
	first := testAnnounce("lobby", 1)
	second := testAnnounce("lobby", 2)
	second.Lifetime = 120
	handle(t, d, signTestAnnounce(t, id, first), dirNow)
	pkt2 := signTestAnnounce(t, id, second)
	handle(t, d, pkt2, dirNow.Add(time.Second))

	kn := onlyRoom(t, d)
	if kn.Serial != 2 || kn.Lifetime != 120 || !bytes.Equal(kn.Raw, pkt2) {
		t.Errorf("kept serial %d, lifetime %d, want serial 2, lifetime 120", kn.Serial, kn.Lifetime)
	}
	if want := dirNow.Add(121 * time.Second); !kn.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", kn.Expires, want)
	}
	if ev := rec.take(); len(ev) != 1 || ev[0].Expired || ev[0].Room.Serial != 1 {
		t.Errorf("events = %+v, want one appearance of serial 1", ev)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": 2})
}

func TestDirectoryDropsStale(t *testing.T) {
	d, stats, _ := newTestDirectory()
	id := seededIdentity(1)
	handle(t, d, signTestAnnounce(t, id, testAnnounce("lobby", 5)), dirNow)
	if err := d.HandleAnnounce(signTestAnnounce(t, id, testAnnounce("lobby", 4)), dirNow); err == nil {
		t.Errorf("HandleAnnounce(older serial) = nil, want an error")
	}
	if kn := onlyRoom(t, d); kn.Serial != 5 {
		t.Errorf("kept serial %d, want 5", kn.Serial)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": 1, "announce_stale": 1})
}

func TestDirectoryConflict(t *testing.T) {
	d, stats, _ := newTestDirectory()
	id := seededIdentity(1)
	a := testAnnounce("lobby", 5)
	pkt := signTestAnnounce(t, id, a)
	handle(t, d, pkt, dirNow)
	a.Lifetime = 999
	if err := d.HandleAnnounce(signTestAnnounce(t, id, a), dirNow.Add(time.Second)); err == nil {
		t.Errorf("HandleAnnounce(same serial, other bytes) = nil, want an error")
	}
	kn := onlyRoom(t, d)
	if !bytes.Equal(kn.Raw, pkt) || kn.Lifetime != 60 {
		t.Errorf("kept lifetime %d, want the first announcement's 60", kn.Lifetime)
	}
	if want := dirNow.Add(60 * time.Second); !kn.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v (a conflict does not refresh)", kn.Expires, want)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": 1, "announce_conflict": 1})
}

func TestDirectoryRefreshAndExpire(t *testing.T) {
	d, stats, rec := newTestDirectory()
	id := seededIdentity(1)
	pkt := signTestAnnounce(t, id, testAnnounce("lobby", 5)) // lifetime 60 s
	short := testAnnounce("short", 1)
	short.Lifetime = 10
	handle(t, d, pkt, dirNow)
	handle(t, d, signTestAnnounce(t, id, short), dirNow)
	rec.take()

	// The same bytes again, from a receive buffer that is then reused.
	again := bytes.Clone(pkt)
	handle(t, d, again, dirNow.Add(30*time.Second))
	clear(again)
	if ev := rec.take(); len(ev) != 0 {
		t.Errorf("events after a refresh = %+v, want none", ev)
	}

	d.Expire(dirNow.Add(10*time.Second - 1))
	if got := d.Len(); got != 2 {
		t.Errorf("Len() before any lapse = %d, want 2", got)
	}
	d.Expire(dirNow.Add(10 * time.Second))
	ev := rec.take()
	if len(ev) != 1 || !ev[0].Expired || ev[0].Room.Room != "short" {
		t.Errorf("events at 10 s = %+v, want short to lapse", ev)
	}
	// Refreshed at 30 s, lobby would have lapsed at 60 s and lapses at 90 s.
	d.Expire(dirNow.Add(60 * time.Second))
	kn := onlyRoom(t, d)
	if kn.Room != "lobby" || !bytes.Equal(kn.Raw, pkt) {
		t.Errorf("kept %q, raw %x, want lobby, %x", kn.Room, kn.Raw, pkt)
	}
	d.Expire(dirNow.Add(90 * time.Second))
	if got := d.Len(); got != 0 {
		t.Errorf("Len() after the refreshed lifetime = %d, want 0", got)
	}
	ev = rec.take()
	if len(ev) != 1 || !ev[0].Expired || ev[0].Room.Room != "lobby" || ev[0].Room.Serial != 5 {
		t.Errorf("events at 90 s = %+v, want lobby to lapse", ev)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": 2, "announce_refreshed": 1})
}

func TestDirectorySameNameTwoHosts(t *testing.T) {
	d, _, _ := newTestDirectory()
	h1, h2 := seededIdentity(1), seededIdentity(2)
	handle(t, d, signTestAnnounce(t, h1, testAnnounce("lobby", 1)), dirNow)
	handle(t, d, signTestAnnounce(t, h2, testAnnounce("lobby", 1)), dirNow)
	handle(t, d, signTestAnnounce(t, h2, testAnnounce("other", 1)), dirNow)
	if got := d.Len(); got != 3 {
		t.Fatalf("Len() = %d, want 3", got)
	}

	if _, err := d.Resolve("lobby"); !errors.Is(err, ErrAmbiguousRoom) {
		t.Errorf("Resolve(%q) = %v, want %v", "lobby", err, ErrAmbiguousRoom)
	}
	for _, id := range []*Identity{h1, h2} {
		ref := "lobby@" + id.Fingerprint()
		kn, err := d.Resolve(ref)
		if err != nil || !bytes.Equal(kn.HostKey[:], id.Pub) {
			t.Errorf("Resolve(%q) = %x, %v, want %x, nil", ref, kn.HostKey, err, id.Pub)
		}
		if err == nil && kn.Ref() != ref {
			t.Errorf("Resolve(%q).Ref() = %q, want %q", ref, kn.Ref(), ref)
		}
	}
	if kn, err := d.Resolve("other"); err != nil || !bytes.Equal(kn.HostKey[:], h2.Pub) {
		t.Errorf("Resolve(%q) = %x, %v, want %x, nil", "other", kn.HostKey, err, h2.Pub)
	}
	for _, ref := range []string{"nope", "other@" + h1.Fingerprint(), "lob"} {
		if _, err := d.Resolve(ref); !errors.Is(err, ErrUnknownRoom) {
			t.Errorf("Resolve(%q) = %v, want %v", ref, err, ErrUnknownRoom)
		}
	}

	l := d.List()
	for i := 1; i < len(l); i++ {
		a, b := l[i-1], l[i]
		if a.Room > b.Room || a.Room == b.Room && bytes.Compare(a.HostKey[:], b.HostKey[:]) >= 0 {
			t.Errorf("List()[%d:%d] = %s, %s, want sorted by name, then key", i-1, i+1, a.Ref(), b.Ref())
		}
	}
}

func TestDirectoryRejectsBadPackets(t *testing.T) {
	d, stats, rec := newTestDirectory()
	host, other := seededIdentity(1), seededIdentity(2)

	forged := signTestAnnounce(t, other, testAnnounce("lobby", 1))
	copy(forged[12:], host.Pub) // claims the host's key
	err := d.HandleAnnounce(forged, dirNow)
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("HandleAnnounce(forged) = %v, want %v", err, ErrBadSignature)
	}

	truncated := signTestAnnounce(t, host, testAnnounce("lobby", 1))
	truncated = truncated[:len(truncated)-1]
	badName := signTestAnnounce(t, host, testAnnounce("two words", 1))
	for _, pkt := range [][]byte{nil, []byte("MD\x03\x01"), truncated, badName} {
		if err := d.HandleAnnounce(pkt, dirNow); err == nil || errors.Is(err, ErrBadSignature) {
			t.Errorf("HandleAnnounce(%.20x…) = %v, want a malformation error", pkt, err)
		}
	}
	if got := d.Len(); got != 0 {
		t.Errorf("Len() = %d, want 0", got)
	}
	if ev := rec.take(); len(ev) != 0 {
		t.Errorf("events = %+v, want none", ev)
	}
	wantStats(t, stats, map[string]int64{"announce_bad_sig": 1, "announce_malformed": 4})
}

// A flood of announcements under fresh keys never grows the directory
// past its bound, and churns through its own entries: a room heard again
// and again before the flood stays listed.
func TestDirectoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("signs thousands of announcements")
	}
	d, stats, rec := newTestDirectory()
	real := signTestAnnounce(t, seededIdentity(1<<40), testAnnounce("general", 1))
	for i := range 3 {
		handle(t, d, real, dirNow.Add(time.Duration(i)*time.Second))
	}
	start := dirNow.Add(3 * time.Second)
	const extra = 50
	for i := range MaxDirectory + extra {
		pkt := signTestAnnounce(t, seededIdentity(uint64(i)), testAnnounce("flood", 1))
		// Spaced within the signature-check budget.
		handle(t, d, pkt, start.Add(time.Duration(i)*5*time.Millisecond))
		if got := d.Len(); got > MaxDirectory {
			t.Fatalf("Len() = %d after %d announcements, want at most %d", got, i+1, MaxDirectory)
		}
	}
	if got := d.Len(); got != MaxDirectory {
		t.Errorf("Len() = %d, want %d", got, MaxDirectory)
	}
	if _, err := d.Resolve("general"); err != nil {
		t.Errorf("the room announced before the flood is gone: %v", err)
	}
	var evicted int
	for _, ev := range rec.take() {
		if ev.Expired {
			evicted++
		}
	}
	if want := extra + 1; evicted != want {
		t.Errorf("%d rooms evicted, want %d", evicted, want)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": MaxDirectory + extra + 1, "announce_evicted": extra + 1, "announce_refreshed": 2})
}

// New announcements beyond the signature-check budget are dropped and
// counted, while a listed room's repeated announcement still refreshes it.
func TestDirectoryVerifyBudget(t *testing.T) {
	d, stats, _ := newTestDirectory()
	real := signTestAnnounce(t, seededIdentity(1<<40), testAnnounce("general", 1))
	handle(t, d, real, dirNow)
	now := dirNow.Add(time.Second)
	accepted := 0
	for i := range 2 * verifyBurst {
		pkt := signTestAnnounce(t, seededIdentity(uint64(i)), testAnnounce("flood", 1))
		if d.HandleAnnounce(pkt, now) == nil {
			accepted++
		}
	}
	if accepted != verifyBurst {
		t.Errorf("%d new announcements accepted at one instant, want the burst of %d", accepted, verifyBurst)
	}
	handle(t, d, real, now)
	if kn, err := d.Resolve("general"); err != nil || !kn.Expires.After(now) {
		t.Errorf("the listed room was not refreshed during the flood: %v", err)
	}
	wantStats(t, stats, map[string]int64{"announce_accepted": verifyBurst + 1, "announce_limited": verifyBurst, "announce_refreshed": 1})
}

func TestDirectoryConcurrent(t *testing.T) {
	d, stats, _ := newTestDirectory()
	var pkts [][]byte
	for i := range 8 {
		id := seededIdentity(uint64(i))
		for serial := range uint64(4) {
			pkts = append(pkts, signTestAnnounce(t, id, testAnnounce(fmt.Sprintf("room%d", i%3), serial)))
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i, pkt := range pkts {
				d.HandleAnnounce(pkt, dirNow.Add(time.Duration(w*i)*time.Millisecond))
				d.List()
				d.Resolve("room1")
			}
			d.Expire(dirNow)
		})
	}
	wg.Wait()
	// Every packet lands in exactly one counter.
	var total int64
	for _, n := range stats.Snapshot() {
		total += n
	}
	if want := int64(4 * len(pkts)); total != want {
		t.Errorf("sum of counters = %d, want %d", total, want)
	}
}

// A pinned name under another key is listed apart, flagged and counted,
// and the bare name resolves to the pinned room only.
func TestPins(t *testing.T) {
	d, stats, _ := newTestDirectory()
	alice, mallory := seededIdentity(1), seededIdentity(2)
	handle(t, d, signTestAnnounce(t, alice, testAnnounce("ops", 1)), dirNow)
	if !d.Pin("ops", [32]byte(alice.Pub)) || d.Pin("ops", [32]byte(alice.Pub)) {
		t.Fatal("Pin reports a change the first time only")
	}
	handle(t, d, signTestAnnounce(t, mallory, testAnnounce("ops", 1)), dirNow)
	handle(t, d, signTestAnnounce(t, mallory, testAnnounce("ops", 2)), dirNow)
	handle(t, d, signTestAnnounce(t, mallory, testAnnounce("ops", 2)), dirNow) // a refresh: not counted again
	if got := stats.AnnounceKeyChanged.Load(); got != 2 {
		t.Errorf("announce_key_changed = %d, want 2", got)
	}
	list := d.List()
	if len(list) != 2 {
		t.Fatalf("listed %d rooms, want both", len(list))
	}
	for _, kn := range list {
		if want := kn.Key().Equal(mallory.Pub); kn.KeyChanged != want {
			t.Errorf("%s: KeyChanged = %v, want %v", kn.Ref(), kn.KeyChanged, want)
		}
	}
	kn, err := d.Resolve("ops")
	if err != nil || !kn.Key().Equal(alice.Pub) {
		t.Fatalf("Resolve(ops) = %s, %v; want alice's room, not ambiguous", kn.Ref(), err)
	}
	malloryRef := Ref(mallory.Pub, "ops")
	if kn, err := d.Resolve(malloryRef); err != nil || !kn.KeyChanged {
		t.Fatalf("Resolve(%s) = %+v, %v; the full name still resolves, flagged", malloryRef, kn.Ref(), err)
	}

	// Only mallory's room left: the bare name does not fall to it.
	d.Expire(dirNow.Add(time.Hour))
	handle(t, d, signTestAnnounce(t, mallory, testAnnounce("ops", 3)), dirNow.Add(time.Hour))
	if _, err := d.Resolve("ops"); !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("Resolve(ops) with only another key's room = %v, want ErrUnknownRoom", err)
	}
	// Pinning mallory's key (a join by full name) clears its flag.
	d.Pin("ops", [32]byte(mallory.Pub))
	if kn := onlyRoom(t, d); kn.KeyChanged {
		t.Error("room of the pinned key still flagged")
	}
	if q, ok := d.Pinned("ops"); !ok || q != [32]byte(mallory.Pub) {
		t.Error("Pinned does not return the new pin")
	}
}

func TestMatch(t *testing.T) {
	d, _, _ := newTestDirectory()
	for i := range 3 {
		a := testAnnounce("ops", 1)
		a.Lifetime = uint16(10 * (i + 1))
		handle(t, d, signTestAnnounce(t, seededIdentity(uint64(i)), a), dirNow)
	}
	handle(t, d, signTestAnnounce(t, seededIdentity(9), testAnnounce("other", 1)), dirNow)
	if got := len(d.Match("ops", nil, dirNow)); got != 3 {
		t.Fatalf("Match(ops) = %d rooms, want 3", got)
	}
	// Lapsed but not yet expired: not an answer.
	if got := len(d.Match("ops", nil, dirNow.Add(15*time.Second))); got != 2 {
		t.Fatalf("Match(ops) after 15 s = %d rooms, want 2", got)
	}
	d.Expire(dirNow.Add(25 * time.Second))
	k := [32]byte(seededIdentity(2).Pub)
	if got := d.Match("ops", nil, dirNow.Add(25*time.Second)); len(got) != 1 || got[0].HostKey != k {
		t.Fatalf("Match(ops) after expiry = %d rooms, want only the third", len(got))
	}
	if got := d.Match("ops", &k, dirNow); len(got) != 1 {
		t.Fatalf("Match(ops, key) = %d rooms", len(got))
	}
	if got := d.Match("none", nil, dirNow); len(got) != 0 {
		t.Fatalf("Match(none) = %d rooms", len(got))
	}
	d.Expire(dirNow.Add(time.Hour))
	if len(d.byName) != 0 {
		t.Fatalf("name index holds %d names after everything expired", len(d.byName))
	}
}
