package rooms

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"strings"

	"meshd/rooms/wire"
)

// FingerprintLen is the number of base32 characters in a short
// fingerprint: 40 bits, enough to tell apart the rooms people see at once,
// not to authenticate (the join does that against the whole key).
const FingerprintLen = 8

var fpEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Fingerprint returns the short printable form of an Ed25519 public key.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return fpEncoding.EncodeToString(sum[:5])
}

// KeyIDFingerprint returns the fingerprint of the key a key id names.
// Both are prefixes of the key's SHA-256, so no key is needed.
func KeyIDFingerprint(id [wire.KeyIDLen]byte) string {
	return fpEncoding.EncodeToString(id[:5])
}

// KeyID returns the id that names a member's key in records.
func KeyID(pub ed25519.PublicKey) [wire.KeyIDLen]byte {
	sum := sha256.Sum256(pub)
	return [wire.KeyIDLen]byte(sum[:wire.KeyIDLen])
}

// RoomID returns the id that data packets of room (q, name) carry.
func RoomID(q ed25519.PublicKey, name string) [wire.RoomIDLen]byte {
	h := sha256.New()
	h.Write([]byte("meshd room id v1\x00"))
	h.Write(q)
	h.Write([]byte(name))
	return [wire.RoomIDLen]byte(h.Sum(nil))
}

// Ref is the unambiguous name of a room: name@fingerprint.
func Ref(q ed25519.PublicKey, name string) string {
	return name + "@" + Fingerprint(q)
}

// SplitRef splits "name" or "name@fp" into its parts; fp may be a prefix
// of a fingerprint.
func SplitRef(ref string) (name, fp string) {
	name, fp, _ = strings.Cut(ref, "@")
	return name, fp
}

// DataGroup picks room id's data group inside prefix, so that rooms spread
// over the prefix and a member's kernel filters most other rooms' traffic.
func DataGroup(prefix netip.Prefix, id [wire.RoomIDLen]byte, port uint16) netip.AddrPort {
	base := prefix.Masked().Addr().As4()
	hostBits := 32 - prefix.Bits()
	var off uint32
	if hostBits > 0 {
		h := uint32(id[0])<<24 | uint32(id[1])<<16 | uint32(id[2])<<8 | uint32(id[3])
		off = h & (1<<hostBits - 1)
	}
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v |= off
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), port)
}
