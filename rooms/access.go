package rooms

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"meshd/rooms/wire"
)

// Access is who a hosted room admits.
type Access uint8

// Access modes, as announced.
const (
	AccessOpen       Access = wire.AccessOpen
	AccessInvite     Access = wire.AccessInvite
	AccessPassphrase Access = wire.AccessPassphrase
)

func (a Access) String() string {
	switch a {
	case AccessOpen:
		return "open"
	case AccessInvite:
		return "invite"
	case AccessPassphrase:
		return "passphrase"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParseAccess reads "open", "invite" or "passphrase".
func ParseAccess(s string) (Access, error) {
	for a := AccessOpen; a <= wire.MaxAccess; a++ {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%q is not a room access; use open, invite or passphrase", s)
}

// RoomAccess is who a room admits, as its host configured it.
type RoomAccess struct {
	Mode Access
	// Allow lists the members an invite-only room admits without an
	// invite: hex Ed25519 keys or fingerprints (see ValidateAllow).
	Allow []string
	// Passphrase is a passphrase room's secret.
	Passphrase []byte
}

// Validate reports why a cannot be a room's access, or nil.
func (a RoomAccess) Validate() error {
	switch {
	case a.Mode > wire.MaxAccess:
		return fmt.Errorf("unknown room access %d", a.Mode)
	case len(a.Allow) > 0 && a.Mode != AccessInvite:
		return fmt.Errorf("an allowlist is for invite-only rooms, and this room is %s", a.Mode)
	case a.Mode == AccessPassphrase && len(a.Passphrase) == 0:
		return errors.New("a passphrase room needs a passphrase, and it is empty")
	case a.Mode != AccessPassphrase && len(a.Passphrase) > 0:
		return fmt.Errorf("a passphrase is for passphrase rooms, and this room is %s", a.Mode)
	}
	for _, e := range a.Allow {
		if err := ValidateAllow(e); err != nil {
			return err
		}
	}
	return nil
}

// ValidateAllow reports why entry cannot be on an allowlist, or nil: an
// entry is a member's whole Ed25519 key in hex (64 digits), or its
// fingerprint. A fingerprint is 40 bits, short enough that a determined
// stranger can make a key that has it, so the whole key is the safer
// entry.
func ValidateAllow(entry string) error {
	if len(entry) == 2*ed25519.PublicKeySize {
		if _, err := hex.DecodeString(entry); err == nil {
			return nil
		}
	}
	if len(entry) == FingerprintLen {
		if _, err := fpEncoding.DecodeString(strings.ToLower(entry)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%q is neither a member's key (64 hex digits, as \"meshctl status\" shows it) nor its %d-letter fingerprint", entry, FingerprintLen)
}

// Invite bounds.
const (
	DefaultInviteUses = 1
	DefaultInviteTTL  = 24 * time.Hour
	MaxInviteUses     = 1000
	MaxInviteTTL      = 366 * 24 * time.Hour
	// MaxInvites bounds the open invites of one room.
	MaxInvites = 1024
	// maxAdmitted bounds the keys invites have admitted to one room.
	maxAdmitted = 16384
	tokenLen    = 16
)

// ErrAccess means a room's access does not allow what was asked: an
// invite for a room that is not invite-only, or one invite too many.
var ErrAccess = errors.New("room access")

// accessState is a hosted room's access, guarded by its Sequencer's lock.
// Invites and the keys they admitted are kept in the room's Store: only
// the SHA-256 of each token, so that the file admits nobody.
type accessState struct {
	mode     Access
	allow    map[string]bool           // configured entries: lower-case hex keys and fingerprints
	admitted map[[32]byte]bool         // keys that redeemed an invite
	invites  map[[32]byte]*inviteState // SHA-256 of the token → its budget
	proofKey [32]byte                  // a passphrase room's PassphraseKey
}

type inviteState struct {
	uses    int
	expires time.Time
}

// accessFile is the stored form of a room's invites and admitted keys.
type accessFile struct {
	Admitted []string     `json:"admitted"` // hex keys
	Invites  []inviteFile `json:"invites"`
}

type inviteFile struct {
	SHA256  string    `json:"sha256"` // of the token
	Uses    int       `json:"uses"`   // left
	Expires time.Time `json:"expires"`
}

// newAccessState sets up room (q, name)'s access from its configuration
// and what its store kept.
func newAccessState(q ed25519.PublicKey, name string, cfg RoomAccess, stored []byte) (*accessState, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &accessState{
		mode:     cfg.Mode,
		allow:    make(map[string]bool, len(cfg.Allow)),
		admitted: make(map[[32]byte]bool),
		invites:  make(map[[32]byte]*inviteState),
	}
	for _, e := range cfg.Allow {
		a.allow[strings.ToLower(e)] = true
	}
	if cfg.Mode == AccessPassphrase {
		a.proofKey = PassphraseKey(q, name, cfg.Passphrase)
	}
	if len(stored) == 0 {
		return a, nil
	}
	var f accessFile
	if err := json.Unmarshal(stored, &f); err != nil {
		return nil, fmt.Errorf("stored invites: %w", err)
	}
	if len(f.Admitted) > maxAdmitted || len(f.Invites) > MaxInvites {
		return nil, fmt.Errorf("stored invites: %d keys and %d invites, more than the %d and %d a room holds", len(f.Admitted), len(f.Invites), maxAdmitted, MaxInvites)
	}
	for _, k := range f.Admitted {
		b, err := hex.DecodeString(k)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("stored invites: %q is not a key", k)
		}
		a.admitted[[32]byte(b)] = true
	}
	for _, inv := range f.Invites {
		b, err := hex.DecodeString(inv.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("stored invites: %q is not a SHA-256", inv.SHA256)
		}
		a.invites[[32]byte(b)] = &inviteState{uses: inv.Uses, expires: inv.Expires}
	}
	return a, nil
}

// encode returns the stored form of the invites and admitted keys.
func (a *accessState) encode() ([]byte, error) {
	f := accessFile{Admitted: []string{}, Invites: []inviteFile{}}
	for k := range a.admitted {
		f.Admitted = append(f.Admitted, hex.EncodeToString(k[:]))
	}
	for h, inv := range a.invites {
		f.Invites = append(f.Invites, inviteFile{SHA256: hex.EncodeToString(h[:]), Uses: inv.uses, Expires: inv.expires.UTC()})
	}
	slices.Sort(f.Admitted)
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.Slice(f.Invites, func(i, j int) bool { return f.Invites[i].SHA256 < f.Invites[j].SHA256 })
	return json.MarshalIndent(f, "", "\t")
}

// allowed reports whether pub is on the room's allowlist.
func (a *accessState) allowed(pub ed25519.PublicKey) bool {
	return a.admitted[[32]byte(pub)] || a.allow[hex.EncodeToString(pub)] || a.allow[Fingerprint(pub)]
}

// forget takes pub off the allowlist, wherever it came from.
func (a *accessState) forget(pub ed25519.PublicKey) {
	delete(a.admitted, [32]byte(pub))
	delete(a.allow, hex.EncodeToString(pub))
	delete(a.allow, Fingerprint(pub))
}

// prune drops the invites that expired or were used up.
func (a *accessState) prune(now time.Time) {
	for h, inv := range a.invites {
		if inv.uses <= 0 || !now.Before(inv.expires) {
			delete(a.invites, h)
		}
	}
}

// check decides whether pub may join room ref with cred, on a session
// whose channel binding is binding. For a member admitted by an invite it
// returns the token's hash, to redeem once the join succeeds.
func (a *accessState) check(ref string, pub ed25519.PublicKey, cred, binding []byte, now time.Time) (redeem *[32]byte, err error) {
	switch a.mode {
	case AccessOpen:
		return nil, nil
	case AccessInvite:
		if a.allowed(pub) {
			return nil, nil
		}
		if len(cred) == 0 {
			return nil, fmt.Errorf("room %s is invite-only: ask its host for an invite (meshctl invite)", ref)
		}
		h := sha256.Sum256(cred)
		if inv := a.invites[h]; inv != nil && inv.uses > 0 && now.Before(inv.expires) {
			if len(a.admitted) >= maxAdmitted {
				return nil, fmt.Errorf("room %s admits no more members by invite (%d keys); ask its host to add your key to its allowlist", ref, maxAdmitted)
			}
			return &h, nil
		}
		return nil, fmt.Errorf("the invite is not valid for room %s: it is unknown, used up or expired; ask its host for a new one (meshctl invite)", ref)
	case AccessPassphrase:
		if len(cred) == 0 {
			return nil, fmt.Errorf("room %s needs a passphrase: join it with -passphrase-file FILE", ref)
		}
		if !hmac.Equal(cred, joinProof(a.proofKey, binding, pub)) {
			return nil, fmt.Errorf("wrong passphrase for room %s", ref)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("room %s has an access this daemon does not know", ref)
}

// redeem spends one use of the invite whose hash is h and puts pub on
// the allowlist, so that it rejoins without the invite.
func (a *accessState) redeem(h [32]byte, pub ed25519.PublicKey) {
	if inv := a.invites[h]; inv != nil {
		inv.uses--
		if inv.uses <= 0 {
			delete(a.invites, h)
		}
	}
	a.admitted[[32]byte(pub)] = true
}

// issue makes an invite token good for uses joins until now+ttl.
func (a *accessState) issue(ref string, uses int, ttl time.Duration, now time.Time) ([]byte, error) {
	switch {
	case a.mode != AccessInvite:
		return nil, fmt.Errorf("%w: room %s is %s, not invite-only; invites are for invite-only rooms", ErrAccess, ref, a.mode)
	case uses < 1 || uses > MaxInviteUses:
		return nil, fmt.Errorf("%w: an invite is good for 1 to %d joins, not %d", ErrAccess, MaxInviteUses, uses)
	case ttl <= 0 || ttl > MaxInviteTTL:
		return nil, fmt.Errorf("%w: an invite lasts up to %v (366 days), not %v", ErrAccess, MaxInviteTTL, ttl)
	}
	a.prune(now)
	if len(a.invites) >= MaxInvites {
		return nil, fmt.Errorf("%w: room %s has %d open invites, the most it holds; wait for some to be used or expire", ErrAccess, ref, MaxInvites)
	}
	token := make([]byte, tokenLen)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("invite token: %w", err)
	}
	a.invites[sha256.Sum256(token)] = &inviteState{uses: uses, expires: now.Add(ttl)}
	return token, nil
}

// FormatToken returns the printable form of an invite token.
func FormatToken(token []byte) string { return fpEncoding.EncodeToString(token) }

// ParseToken reads an invite token as FormatToken wrote it.
func ParseToken(s string) ([]byte, error) {
	b, err := fpEncoding.DecodeString(strings.ToLower(s))
	if err != nil || len(b) != tokenLen {
		return nil, fmt.Errorf("%q is not an invite token: it is the part after the '/' of what \"meshctl invite\" printed", s)
	}
	return b, nil
}

// PassphraseKey derives the key a member proves a passphrase room's
// passphrase with. It is bound to the room (q, name), so a member's daemon
// stores it to rejoin after a restart without keeping the passphrase, and
// it opens no other room with the same passphrase.
func PassphraseKey(q ed25519.PublicKey, name string, passphrase []byte) [32]byte {
	mac := hmac.New(sha256.New, passphrase)
	mac.Write([]byte("meshd passphrase v1\x00"))
	id := RoomID(q, name)
	mac.Write(id[:])
	return [32]byte(mac.Sum(nil))
}

// joinProof is what a member sends to show it holds a passphrase room's
// key: a MAC over the session's channel binding (secure.Conn's
// ChannelBinding, the same at both ends of one session and no other) and
// the member's key, so that it is worthless on any other session, and
// never reveals the key.
func joinProof(key [32]byte, binding []byte, member ed25519.PublicKey) []byte {
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte("meshd join proof v1\x00"))
	mac.Write(binding)
	mac.Write(member)
	return mac.Sum(nil)
}

// Credential is what a member shows the host of a room that is not open.
type Credential struct {
	// Token is an invite token (ParseToken), spent by the first join: the
	// host then knows the member's key.
	Token []byte
	// Key is a passphrase room's PassphraseKey; nil for other rooms.
	Key *[32]byte
}
