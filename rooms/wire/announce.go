package wire

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
)

// SigLen is the length of an Ed25519 signature.
const SigLen = ed25519.SignatureSize

// Room access, as announced. ONLY APPEND.
const (
	AccessOpen       = 0 // anyone may join
	AccessInvite     = 1 // keys on the host's allowlist, and holders of an invite token
	AccessPassphrase = 2 // members who prove they know the room's passphrase
	MaxAccess        = AccessPassphrase
)

// Announce is a host's announcement of one room. Its signature covers every
// byte before it; ParseAnnounce keeps the slice that was signed so the
// verifier checks the exact bytes received.
//
//	 0  header (TypeAnnounce)                      4 bytes
//	 4  serial T                                   uint64
//	12  host key Q                                 32 bytes
//	44  lifetime in seconds                        uint16
//	46  data group                                 addr (7 or 19 bytes)
//	..  room name R                                uint8 length, ≤ MaxRoomName bytes
//	..  join address count                         uint8, 1..MaxAddrs
//	..  join addresses S                           addr each
//	..  access                                     uint8: AccessOpen, AccessInvite or AccessPassphrase
//	..  Ed25519ctx signature by Q                  64 bytes
//
// An addr is a family byte (4 or 6), the 4- or 16-byte address and a uint16
// port.
type Announce struct {
	Serial   uint64
	HostKey  [ed25519.PublicKeySize]byte
	Lifetime uint16
	Group    netip.AddrPort
	Room     string
	Addrs    []netip.AddrPort
	// Access says who the host admits, so that a member can tell its
	// user what a join needs before trying. The host decides at the join;
	// the byte is signed so that nobody else can change what is shown.
	Access uint8
	Sig    [SigLen]byte

	// Signed is the part of the packet the signature covers. Set by
	// ParseAnnounce; AppendAnnounceBody returns it for signing.
	Signed []byte
}

// AppendAnnounceBody appends the signed part of a to b.
func AppendAnnounceBody(b []byte, a *Announce) ([]byte, error) {
	if a.Room == "" || len(a.Room) > MaxRoomName {
		return b, fmt.Errorf("%w: room name length %d", ErrTooLong, len(a.Room))
	}
	if len(a.Addrs) == 0 || len(a.Addrs) > MaxAddrs {
		return b, fmt.Errorf("%w: %d join addresses", ErrInvalid, len(a.Addrs))
	}
	if err := checkAddrPort(a.Group); err != nil {
		return b, err
	}
	if a.Access > MaxAccess {
		return b, fmt.Errorf("%w: access %d", ErrInvalid, a.Access)
	}
	for _, ap := range a.Addrs {
		if err := checkAddrPort(ap); err != nil {
			return b, err
		}
	}
	b = appendHeader(b, TypeAnnounce)
	b = appendU64(b, a.Serial)
	b = append(b, a.HostKey[:]...)
	b = appendU16(b, a.Lifetime)
	b = appendAddrPort(b, a.Group)
	b = appendStr8(b, a.Room)
	b = append(b, byte(len(a.Addrs)))
	for _, ap := range a.Addrs {
		b = appendAddrPort(b, ap)
	}
	return append(b, a.Access), nil
}

// ParseAnnounce decodes an announcement packet. It checks the format, not
// the signature.
func ParseAnnounce(b []byte) (Announce, error) {
	var a Announce
	typ, err := PacketType(b)
	if err != nil {
		return a, err
	}
	if typ != TypeAnnounce {
		return a, fmt.Errorf("%w %d, want announcement", ErrType, typ)
	}
	if len(b) < HeaderLen+SigLen {
		return a, ErrShort
	}
	body := b[:len(b)-SigLen]
	r := reader{b: body[HeaderLen:]}
	a.Serial = r.u64()
	copy(a.HostKey[:], r.take(len(a.HostKey)))
	a.Lifetime = r.u16()
	a.Group = r.addrPort()
	a.Room = r.str8(MaxRoomName)
	n := int(r.u8())
	if r.err == nil && (n == 0 || n > MaxAddrs) {
		r.fail(ErrInvalid)
	}
	if r.err == nil {
		a.Addrs = make([]netip.AddrPort, 0, n)
		for range n {
			a.Addrs = append(a.Addrs, r.addrPort())
		}
	}
	a.Access = r.u8()
	if r.err == nil && a.Access > MaxAccess {
		r.fail(ErrInvalid)
	}
	if err := r.done(); err != nil {
		return Announce{}, fmt.Errorf("announcement: %w", err)
	}
	if a.Room == "" {
		return Announce{}, fmt.Errorf("announcement: %w: empty room name", ErrInvalid)
	}
	copy(a.Sig[:], b[len(body):])
	a.Signed = body
	return a, nil
}
