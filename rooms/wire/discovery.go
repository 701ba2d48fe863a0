package wire

import (
	"crypto/ed25519"
	"fmt"
)

// QueryLen is the fixed size of a query on the wire. Queries are padded to
// it so that the answer one query can draw (a single announcement, at most
// MaxAnnounceLen bytes) stays within three times the query's size: a
// forged query cannot turn a daemon into an amplifier.
const QueryLen = 128

// MaxAnnounceLen is the longest announcement the encoder can produce: the
// longest room name, MaxAddrs IPv6 join addresses, an IPv6 group and the
// access byte.
const MaxAnnounceLen = HeaderLen + 8 + ed25519.PublicKeySize + 2 + 19 + 1 + MaxRoomName + 1 + MaxAddrs*19 + 1 + SigLen

// MaxHops bounds the hop count a relayed announcement may carry.
const MaxHops = 32

// Query asks the daemons that hear it for a room's announcement.
//
//	 0  header (TypeQuery)                     4 bytes
//	 4  nonce                                  8 bytes, random per search
//	12  TTL the query was sent with            uint8, 1..255
//	13  flags                                  uint8: bit 0 set = only rooms of this host key
//	14  host key Q, or zeros                   32 bytes
//	46  room name R                            uint8 length, 1..MaxRoomName bytes
//	..  zeros up to QueryLen
//
// The sent TTL lets a receiver that learns the TTL left on arrival tell
// how many routers the query crossed.
type Query struct {
	Nonce   uint64
	TTL     uint8
	HasKey  bool
	HostKey [ed25519.PublicKeySize]byte
	Room    string
}

const queryFlagKey = 1

// AppendQuery appends q, padded to QueryLen, to b.
func AppendQuery(b []byte, q *Query) ([]byte, error) {
	if q.Room == "" || len(q.Room) > MaxRoomName {
		return b, fmt.Errorf("%w: room name length %d", ErrTooLong, len(q.Room))
	}
	if q.TTL == 0 {
		return b, fmt.Errorf("%w: query TTL 0", ErrInvalid)
	}
	if !q.HasKey && q.HostKey != ([ed25519.PublicKeySize]byte{}) {
		return b, fmt.Errorf("%w: host key without the flag", ErrInvalid)
	}
	start := len(b)
	b = appendHeader(b, TypeQuery)
	b = appendU64(b, q.Nonce)
	b = append(b, q.TTL)
	var flags byte
	if q.HasKey {
		flags |= queryFlagKey
	}
	b = append(b, flags)
	b = append(b, q.HostKey[:]...)
	b = appendStr8(b, q.Room)
	return append(b, make([]byte, QueryLen-(len(b)-start))...), nil
}

// ParseQuery decodes a query. It accepts exactly QueryLen bytes with zero
// padding, so every accepted query has one encoding.
func ParseQuery(b []byte) (Query, error) {
	var q Query
	typ, err := PacketType(b)
	if err != nil {
		return q, err
	}
	if typ != TypeQuery {
		return q, fmt.Errorf("%w %d, want query", ErrType, typ)
	}
	if len(b) != QueryLen {
		return q, fmt.Errorf("query: %d bytes: %w", len(b), ErrInvalid)
	}
	r := reader{b: b[HeaderLen:]}
	q.Nonce = r.u64()
	q.TTL = r.u8()
	flags := r.u8()
	copy(q.HostKey[:], r.take(len(q.HostKey)))
	q.Room = r.str8(MaxRoomName)
	if r.err != nil {
		return Query{}, fmt.Errorf("query: %w", r.err)
	}
	for _, c := range r.b {
		if c != 0 {
			return Query{}, fmt.Errorf("query: padding: %w", ErrInvalid)
		}
	}
	q.HasKey = flags&queryFlagKey != 0
	switch {
	case flags&^queryFlagKey != 0:
		return Query{}, fmt.Errorf("query: flags %#x: %w", flags, ErrInvalid)
	case q.TTL == 0:
		return Query{}, fmt.Errorf("query: TTL 0: %w", ErrInvalid)
	case q.Room == "":
		return Query{}, fmt.Errorf("query: %w: empty room name", ErrInvalid)
	case !q.HasKey && q.HostKey != ([ed25519.PublicKeySize]byte{}):
		return Query{}, fmt.Errorf("query: host key without the flag: %w", ErrInvalid)
	}
	return q, nil
}

// Relay is an announcement a relay passed on.
//
//	0  header (TypeRelay)                      4 bytes
//	4  hops                                    uint8, 1..MaxHops: relays it crossed
//	5  the host's announcement packet          as the host sent it, signature included
//
// The announcement is carried byte for byte, so its signature still
// verifies; the hop count is not signed (a relay can only make an
// announcement travel less far by raising it, or further by at most the
// hop limits of the relays after it).
type Relay struct {
	Hops     uint8
	Announce []byte // aliases the packet
}

// AppendRelay appends a relayed announcement to b.
func AppendRelay(b []byte, hops uint8, announce []byte) ([]byte, error) {
	if hops == 0 || hops > MaxHops {
		return b, fmt.Errorf("%w: %d hops", ErrInvalid, hops)
	}
	if typ, err := PacketType(announce); err != nil || typ != TypeAnnounce {
		return b, fmt.Errorf("%w: relayed packet is not an announcement", ErrInvalid)
	}
	b = appendHeader(b, TypeRelay)
	b = append(b, hops)
	return append(b, announce...), nil
}

// RelayOverhead is what relaying adds to an announcement.
const RelayOverhead = HeaderLen + 1

// ParseRelay decodes a relayed announcement. It checks the format of the
// carried announcement, not its signature.
func ParseRelay(b []byte) (Relay, error) {
	typ, err := PacketType(b)
	if err != nil {
		return Relay{}, err
	}
	if typ != TypeRelay {
		return Relay{}, fmt.Errorf("%w %d, want relayed announcement", ErrType, typ)
	}
	if len(b) < RelayOverhead {
		return Relay{}, fmt.Errorf("relay: %w", ErrShort)
	}
	rl := Relay{Hops: b[HeaderLen], Announce: b[RelayOverhead:]}
	if rl.Hops == 0 || rl.Hops > MaxHops {
		return Relay{}, fmt.Errorf("relay: %d hops: %w", rl.Hops, ErrInvalid)
	}
	if _, err := ParseAnnounce(rl.Announce); err != nil {
		return Relay{}, fmt.Errorf("relay: %w", err)
	}
	return rl, nil
}
