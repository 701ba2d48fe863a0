package rooms

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"meshd/rooms/wire"
)

// MaxDirectory bounds the rooms a directory holds, so that a flood of
// forged-but-signed announcements under fresh keys cannot grow memory
// without bound; the entry closest to expiry makes room.
const MaxDirectory = 4096

// Known is one room a directory holds.
type Known struct {
	wire.Announce
	Raw     []byte    // the packet as received, for relaying and answering queries
	Expires time.Time // when it lapses without a fresher announcement
	// KeyChanged marks a room whose name this daemon pinned to another
	// host key: possibly an impostor. It is listed, never resolved by the
	// bare name.
	KeyChanged bool
	refreshes  int // how often it was heard; the eviction order
}

// Key returns the room's host key Q.
func (k *Known) Key() ed25519.PublicKey { return ed25519.PublicKey(k.HostKey[:]) }

// Ref returns the room's name@fingerprint.
func (k *Known) Ref() string { return Ref(k.Key(), k.Room) }

type roomKey struct {
	q    [ed25519.PublicKeySize]byte
	name string
}

// DirectoryEvent reports a room appearing in, or lapsing from, a directory.
type DirectoryEvent struct {
	Room    Known
	Expired bool
}

// Directory holds the rooms that verified announcements make known: the
// newest announcement per (Q, R), until it lapses. Safe for concurrent use.
type Directory struct {
	stats    *Stats
	onChange func(DirectoryEvent) // called without the lock held

	mu           sync.Mutex
	rooms        map[roomKey]*Known
	byName       map[string][][ed25519.PublicKeySize]byte // the host keys of the rooms of each name, for Match
	pins         map[string][ed25519.PublicKeySize]byte   // room name → the host key first joined
	verifyBudget bucket
}

// Signature checks of new announcements are budgeted: a flood of forged
// or fresh-key announcements costs at most this much CPU (about 40 µs a
// check on a laptop, 15 times more on a router).
const (
	verifyRate  = 500
	verifyBurst = 200
)

var errVerifyBudget = errors.New("announcement dropped: over the signature-check budget")

// NewDirectory returns an empty directory. onChange, if not nil, hears of
// rooms that appear and lapse; it must not block.
func NewDirectory(stats *Stats, onChange func(DirectoryEvent)) *Directory {
	return &Directory{
		stats:        stats,
		onChange:     onChange,
		rooms:        make(map[roomKey]*Known),
		byName:       make(map[string][][ed25519.PublicKeySize]byte),
		pins:         make(map[string][ed25519.PublicKeySize]byte),
		verifyBudget: bucket{rate: verifyRate, burst: verifyBurst},
	}
}

// HandleAnnounce verifies an announcement packet and keeps it if it is the
// newest for its room. It returns why it dropped the packet, if it did;
// every drop is counted.
func (d *Directory) HandleAnnounce(b []byte, now time.Time) error {
	// The same bytes again refresh a room without a signature check, so a
	// flood that exhausts the verification budget cannot make the rooms
	// already listed lapse.
	if a, err := wire.ParseAnnounce(b); err == nil {
		d.mu.Lock()
		old, ok := d.rooms[roomKey{q: a.HostKey, name: a.Room}]
		if ok && bytes.Equal(b, old.Raw) {
			old.Expires = now.Add(time.Duration(a.Lifetime) * time.Second)
			old.refreshes++
			d.mu.Unlock()
			d.stats.AnnounceRefreshed.Add(1)
			return nil
		}
		allowed := d.verifyBudget.allow(now)
		d.mu.Unlock()
		if !allowed {
			d.stats.AnnounceLimited.Add(1)
			return errVerifyBudget
		}
	}
	a, err := VerifyAnnounce(b)
	if errors.Is(err, ErrBadSignature) {
		d.stats.AnnounceBadSig.Add(1)
		return err
	}
	if err != nil {
		d.stats.AnnounceMalformed.Add(1)
		return err
	}
	if err := ValidateName(a.Room); err != nil {
		d.stats.AnnounceMalformed.Add(1)
		return fmt.Errorf("announcement: %w", err)
	}
	k := roomKey{q: a.HostKey, name: a.Room}
	expires := now.Add(time.Duration(a.Lifetime) * time.Second)

	d.mu.Lock()
	old, ok := d.rooms[k]
	switch {
	case ok && a.Serial < old.Serial:
		d.mu.Unlock()
		d.stats.AnnounceStale.Add(1)
		return fmt.Errorf("announcement of %s: serial %d is older than %d", old.Ref(), a.Serial, old.Serial)
	case ok && a.Serial == old.Serial && !bytes.Equal(b, old.Raw):
		d.mu.Unlock()
		d.stats.AnnounceConflict.Add(1)
		return fmt.Errorf("announcement of %s: serial %d reused with different contents", old.Ref(), a.Serial)
	}
	raw := bytes.Clone(b)
	// Re-parse the private copy so the kept announcement aliases it, not
	// the caller's receive buffer.
	a, _ = wire.ParseAnnounce(raw)
	kn := &Known{Announce: a, Raw: raw, Expires: expires}
	if ok {
		kn.refreshes = old.refreshes + 1
	}
	if pin, pinned := d.pins[a.Room]; pinned && pin != a.HostKey {
		kn.KeyChanged = true
	}
	var evicted *Known
	if !ok && len(d.rooms) >= MaxDirectory {
		evicted = d.evictLocked()
	}
	if !ok {
		d.byName[k.name] = append(d.byName[k.name], k.q)
	}
	d.rooms[k] = kn
	snapshot := *kn
	d.mu.Unlock()

	d.stats.AnnounceAccepted.Add(1)
	if kn.KeyChanged {
		d.stats.AnnounceKeyChanged.Add(1)
	}
	if evicted != nil {
		d.stats.AnnounceEvicted.Add(1)
		d.notify(DirectoryEvent{Room: *evicted, Expired: true})
	}
	if !ok {
		d.notify(DirectoryEvent{Room: snapshot})
	}
	return nil
}

// evictLocked makes room for a newcomer by dropping the room heard least
// often, the newest of those first: a flood of fresh keys then churns
// through its own entries, and rooms announced again and again stay.
func (d *Directory) evictLocked() *Known {
	var victim *Known
	for _, kn := range d.rooms {
		if victim == nil || kn.refreshes < victim.refreshes ||
			kn.refreshes == victim.refreshes && kn.Expires.After(victim.Expires) {
			victim = kn
		}
	}
	d.deleteLocked(roomKey{q: victim.HostKey, name: victim.Room})
	return victim
}

func (d *Directory) deleteLocked(k roomKey) {
	delete(d.rooms, k)
	keys := slices.DeleteFunc(d.byName[k.name], func(q [ed25519.PublicKeySize]byte) bool { return q == k.q })
	if len(keys) == 0 {
		delete(d.byName, k.name)
	} else {
		d.byName[k.name] = keys
	}
}

func (d *Directory) notify(ev DirectoryEvent) {
	if d.onChange != nil {
		d.onChange(ev)
	}
}

// Expire drops the rooms whose announcements lapsed before now.
func (d *Directory) Expire(now time.Time) {
	var gone []Known
	d.mu.Lock()
	for k, kn := range d.rooms {
		if !now.Before(kn.Expires) {
			gone = append(gone, *kn)
			d.deleteLocked(k)
		}
	}
	d.mu.Unlock()
	for _, kn := range gone {
		d.notify(DirectoryEvent{Room: kn, Expired: true})
	}
}

// List returns the rooms held, sorted by name, then fingerprint.
func (d *Directory) List() []Known {
	d.mu.Lock()
	out := make([]Known, 0, len(d.rooms))
	for _, kn := range d.rooms {
		out = append(out, *kn)
	}
	d.mu.Unlock()
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		return cmp.Or(strings.Compare(a.Room, b.Room), bytes.Compare(a.HostKey[:], b.HostKey[:])) < 0
	})
	return out
}

// Match returns the unexpired rooms called name, of host key key if it is
// not nil: what answers a query.
func (d *Directory) Match(name string, key *[ed25519.PublicKeySize]byte, now time.Time) []Known {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key != nil {
		kn, ok := d.rooms[roomKey{q: *key, name: name}]
		if !ok || !now.Before(kn.Expires) {
			return nil
		}
		return []Known{*kn}
	}
	var out []Known
	for _, q := range d.byName[name] {
		if kn := d.rooms[roomKey{q: q, name: name}]; now.Before(kn.Expires) {
			out = append(out, *kn)
		}
	}
	return out
}

// Get returns the unexpired room (q, name).
func (d *Directory) Get(q [ed25519.PublicKeySize]byte, name string, now time.Time) (Known, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kn, ok := d.rooms[roomKey{q: q, name: name}]
	if !ok || !now.Before(kn.Expires) {
		return Known{}, false
	}
	return *kn, true
}

// Len returns the number of rooms held.
func (d *Directory) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.rooms)
}

// Pin records that room name belongs to host key q, as the daemon does
// at the first successful join (and at a join that names the key): from
// then on, announcements of name under other keys are flagged KeyChanged
// and the bare name resolves only to q. It reports whether the pin
// changed.
func (d *Directory) Pin(name string, q [ed25519.PublicKeySize]byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.pins[name]; ok && old == q {
		return false
	}
	d.pins[name] = q
	for k, kn := range d.rooms {
		if k.name == name {
			kn.KeyChanged = k.q != q
		}
	}
	return true
}

// Pinned returns the host key room name is pinned to, if it is.
func (d *Directory) Pinned(name string) ([ed25519.PublicKeySize]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.pins[name]
	return q, ok
}

// Pins returns every pin.
func (d *Directory) Pins() map[string][ed25519.PublicKeySize]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.pins)
}

// ErrUnknownRoom means no announcement names the room.
var ErrUnknownRoom = errors.New("unknown room")

// ErrAmbiguousRoom means several hosts announce the name.
var ErrAmbiguousRoom = errors.New("ambiguous room")

// Resolve finds the room a person means by "name" or "name@fp" (fp may be
// a prefix of the fingerprint). A bare name that is pinned means the
// pinned host's room only.
func (d *Directory) Resolve(ref string) (Known, error) {
	name, fp := SplitRef(ref)
	pin, pinned := d.Pinned(name)
	var found []Known
	for _, kn := range d.List() {
		if kn.Room != name || !strings.HasPrefix(Fingerprint(kn.Key()), fp) {
			continue
		}
		if fp == "" && pinned && kn.HostKey != pin {
			continue
		}
		found = append(found, kn)
	}
	switch len(found) {
	case 0:
		if fp == "" && pinned {
			for _, kn := range d.List() {
				if kn.Room == name {
					return Known{}, fmt.Errorf("%w %q: only %s announces it, under another host key than the room you joined before (%s): maybe an impostor; join it by that full name if you trust it",
						ErrUnknownRoom, ref, kn.Ref(), Ref(pin[:], name))
				}
			}
		}
		return Known{}, fmt.Errorf("%w %q: no host on this network announces it (run \"meshctl rooms\" to see the rooms that are)", ErrUnknownRoom, ref)
	case 1:
		return found[0], nil
	}
	refs := make([]string, len(found))
	for i := range found {
		refs[i] = found[i].Ref()
	}
	return Known{}, fmt.Errorf("%w %q: %d hosts announce it; name one of %s", ErrAmbiguousRoom, ref, len(found), strings.Join(refs, ", "))
}
