// Package wire is meshd's on-the-wire format: the UDP packets (signed room
// announcements, sealed room data) and the frames of the TCP session between
// a member and a room's host. It encodes and decodes bytes and nothing else:
// signing, sealing and every decision about a packet belong to package rooms.
//
// Every packet starts with the same four bytes:
//
//	0      1      2        3
//	+------+------+--------+--------+
//	| 'M'  | 'D'  | version| type   |
//	+------+------+--------+--------+
//
// All integers are big-endian (routers include big-endian MIPS), every
// variable-length field has a length prefix bounded by a named constant, and
// decoders reject trailing bytes, so a decoded packet re-encodes to exactly
// the bytes that were signed. docs/PROTOCOL.md draws every message.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Version is the protocol version in every packet header. It is 5 since
// sealed packets name their room by a 4-byte tag, their epoch by a byte
// and their block by 3, and a block's batches of one sender carry no
// sender indexes (data.go): 8 bytes a 1400-byte packet and one a line,
// a percent of a busy room's link. 4 came with sealed packets without a
// nonce (a shard's is its place in its block) and batch format v3; 3 came
// with FEC blocks of several batches, 2 with batch format v2. Daemons of different versions do not interoperate, and a receiver
// tells its user so instead of counting the other's packets as malformed.
const Version = 5

// Packet types. ONLY APPEND: a number, once used, keeps its meaning forever.
const (
	TypeAnnounce = 1 // a host's signed room announcement, on the discovery group
	// 2 was a one-packet data format, retired before release. Never reuse.
	TypeShard     = 3 // one FEC shard of a signed batch, on a room's data group
	TypeHeartbeat = 4 // the host's word on where an idle room's stream stands
	TypeNack      = 5 // a member's request for repair shards
	TypeQuery     = 6 // a search for a room, on the discovery group or to a peer
	TypeRelay     = 7 // an announcement passed on by a relay, with its hop count
)

// HeaderLen is the length of the common packet header.
const HeaderLen = 4

// Decoding errors. Callers count drops by these.
var (
	ErrShort    = errors.New("truncated")
	ErrTrailing = errors.New("trailing bytes")
	ErrMagic    = errors.New("not a meshd packet")
	// ErrVersion is returned as is, without the version it found, so that
	// dropping such a packet does not allocate; PeerVersion reads it.
	ErrVersion = errors.New("unsupported protocol version")
	ErrType    = errors.New("unknown packet type")
	ErrTooLong = errors.New("field longer than its bound")
	ErrInvalid = errors.New("invalid field")
)

// PacketType returns the type of a meshd packet after checking its header.
func PacketType(b []byte) (byte, error) {
	if len(b) < HeaderLen {
		return 0, ErrShort
	}
	if b[0] != 'M' || b[1] != 'D' {
		return 0, ErrMagic
	}
	if b[2] != Version {
		return 0, ErrVersion
	}
	return b[3], nil
}

// PeerVersion returns the protocol version a packet's header names, for
// telling the user after PacketType returned ErrVersion.
func PeerVersion(b []byte) byte {
	if len(b) < HeaderLen {
		return 0
	}
	return b[2]
}

func appendHeader(b []byte, typ byte) []byte {
	return append(b, 'M', 'D', Version, typ)
}

// reader decodes fields from a byte slice. The first failure sticks, so a
// decoder reads every field and checks r.err once at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = ErrShort
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// uvarint reads an unsigned varint (encoding/binary's) of at most max
// bytes, in its shortest encoding: a longer one, such as 0x80 0x00 for 0,
// would give a value a second encoding.
func (r *reader) uvarint(max int) uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < max && i < len(r.b); i++ {
		c := r.b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				r.fail(ErrInvalid)
				return 0
			}
			r.b = r.b[i+1:]
			return v
		}
	}
	if len(r.b) < max {
		r.fail(ErrShort)
	} else {
		r.fail(ErrTooLong)
	}
	r.b = nil
	return 0
}

// str8 reads a string with a one-byte length prefix, at most max bytes.
func (r *reader) str8(max int) string {
	return string(r.bytes8(max))
}

// bytes8 reads bytes with a one-byte length prefix, at most max bytes.
func (r *reader) bytes8(max int) []byte {
	n := int(r.u8())
	if n > max {
		r.fail(ErrTooLong)
		return nil
	}
	return r.take(n)
}

// bytes16 reads bytes with a two-byte length prefix, at most max bytes.
func (r *reader) bytes16(max int) []byte {
	n := int(r.u16())
	if n > max {
		r.fail(ErrTooLong)
		return nil
	}
	return r.take(n)
}

func (r *reader) addrPort() netip.AddrPort {
	var a netip.Addr
	switch fam := r.u8(); fam {
	case 4:
		if v := r.take(4); v != nil {
			a = netip.AddrFrom4([4]byte(v))
		}
	case 6:
		if v := r.take(16); v != nil {
			a = netip.AddrFrom16([16]byte(v))
			if a.Is4In6() {
				// The encoder writes these as family 4; accepting them here
				// would give one value two encodings.
				r.fail(ErrInvalid)
			}
		}
	default:
		r.fail(ErrInvalid)
	}
	return netip.AddrPortFrom(a, r.u16())
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// done reports the sticky error, or ErrTrailing if bytes are left over.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return ErrTrailing
	}
	return nil
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func appendStr8(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

func appendBytes16(b, v []byte) []byte {
	return append(appendU16(b, uint16(len(v))), v...)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		v := a.As4()
		b = append(append(b, 4), v[:]...)
	} else {
		v := a.As16()
		b = append(append(b, 6), v[:]...)
	}
	return appendU16(b, ap.Port())
}

// checkAddrPort reports whether ap can be encoded.
func checkAddrPort(ap netip.AddrPort) error {
	if !ap.Addr().IsValid() {
		return fmt.Errorf("%w: address %v", ErrInvalid, ap)
	}
	return nil
}
