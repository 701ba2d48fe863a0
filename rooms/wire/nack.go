package wire

import "fmt"

// NonceXLen is the length of an XChaCha20-Poly1305 nonce. Members seal
// NACKs with random nonces, because many members share the key and could
// not agree on counters.
const NonceXLen = 24

// NackHeaderLen is the length of a NACK packet's cleartext header, which
// is also its AEAD's associated data (the nonce aside).
const NackHeaderLen = HeaderLen + RoomIDLen + 4

// MaxNackEntries bounds the blocks one NACK asks about.
const MaxNackEntries = 32

// MissingAll in a NACK entry means the member holds no shard of the block
// (it learned of the block only from a later one or a heartbeat).
const MissingAll = 0xff

// Nack is a member's request for repair, multicast to the room's group so
// that the host hears it and other members who miss the same can hold
// their own back.
//
//	 0  header (TypeNack)      4 bytes
//	 4  room id                8 bytes
//	12  key epoch              uint32, the low half, as in SealedHeader
//	16  nonce                  24 bytes
//	40  XChaCha20-Poly1305 ciphertext of the body, then the tag
//
// The body, sealed under a key derived from the epoch key:
//
//	key id of the member   8 bytes
//	session                uint64, nonzero: the member's session id, from its Welcome
//	counter                uint64, nonzero: 1 for the session's first NACK, then one more per NACK
//	entry count            uint8, 1..MaxNackEntries
//	entries                block uint64, missing uint8 (shards it still needs, or MissingAll)
//
// Every member holds the NACK key, and anyone on the link can copy a NACK:
// the session and counter let the host drop copies (replays), which would
// otherwise use up the member's repair budget.
type Nack struct {
	KeyID   [KeyIDLen]byte
	Session uint64
	Counter uint64
	Entries []NackEntry
}

// NackEntry asks for Missing more shards of Block.
type NackEntry struct {
	Block   uint64
	Missing uint8
}

// NackHeader is the cleartext start of a NACK packet.
type NackHeader struct {
	Room  [RoomIDLen]byte
	Epoch uint32
	Nonce [NonceXLen]byte
}

// AppendNackHeader appends h to b.
func AppendNackHeader(b []byte, h NackHeader) []byte {
	b = appendHeader(b, TypeNack)
	b = append(b, h.Room[:]...)
	b = appendU32(b, h.Epoch)
	return append(b, h.Nonce[:]...)
}

// ParseNackHeader decodes the cleartext header of a NACK packet; the
// sealed body follows it.
func ParseNackHeader(b []byte) (NackHeader, error) {
	var h NackHeader
	typ, err := PacketType(b)
	if err != nil {
		return h, err
	}
	if typ != TypeNack {
		return h, fmt.Errorf("%w %d, want nack", ErrType, typ)
	}
	if len(b) < NackHeaderLen+NonceXLen+TagLen {
		return h, ErrShort
	}
	r := reader{b: b[HeaderLen : NackHeaderLen+NonceXLen]}
	copy(h.Room[:], r.take(RoomIDLen))
	h.Epoch = r.u32()
	copy(h.Nonce[:], r.take(NonceXLen))
	return h, r.err
}

// AppendNackBody appends the plaintext body of n to b. It refuses, leaving
// b unchanged, what ParseNackBody would reject.
func AppendNackBody(b []byte, n *Nack) ([]byte, error) {
	if len(n.Entries) == 0 || len(n.Entries) > MaxNackEntries {
		return b, fmt.Errorf("nack: %w: %d entries", ErrInvalid, len(n.Entries))
	}
	if n.Session == 0 || n.Counter == 0 {
		return b, fmt.Errorf("nack: %w: session %d, counter %d", ErrInvalid, n.Session, n.Counter)
	}
	for i, e := range n.Entries {
		if e.Block == 0 || e.Missing == 0 {
			return b, fmt.Errorf("nack: %w: entry %d asks for %d shards of block %d", ErrInvalid, i, e.Missing, e.Block)
		}
	}
	b = append(b, n.KeyID[:]...)
	b = appendU64(b, n.Session)
	b = appendU64(b, n.Counter)
	b = append(b, byte(len(n.Entries)))
	for _, e := range n.Entries {
		b = appendU64(b, e.Block)
		b = append(b, e.Missing)
	}
	return b, nil
}

// ParseNackBody decodes a NACK body into n, reusing n.Entries.
func ParseNackBody(b []byte, n *Nack) error {
	r := reader{b: b}
	copy(n.KeyID[:], r.take(KeyIDLen))
	n.Session, n.Counter = r.u64(), r.u64()
	if r.err == nil && (n.Session == 0 || n.Counter == 0) {
		r.fail(ErrInvalid)
	}
	cnt := int(r.u8())
	if r.err == nil && (cnt == 0 || cnt > MaxNackEntries) {
		r.fail(ErrInvalid)
	}
	n.Entries = n.Entries[:0]
	for i := 0; i < cnt && r.err == nil; i++ {
		e := NackEntry{Block: r.u64(), Missing: r.u8()}
		if e.Block == 0 || e.Missing == 0 {
			r.fail(ErrInvalid)
		}
		n.Entries = append(n.Entries, e)
	}
	if err := r.done(); err != nil {
		return fmt.Errorf("nack: %w", err)
	}
	return nil
}
