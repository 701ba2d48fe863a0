package wire

import "fmt"

// How a block's batches are authenticated: the last byte of its payload
// says which, and what comes before it is
//
//	AuthSig:  the host's Ed25519ctx signature over the batches
//	          (BlockContext ‖ room id), SigLen bytes
//	AuthMACs: a MAC for each member slot, MACLen bytes each, slot 0
//	          first, then their count (uint8, 1..MaxMACSlots)
//
// A member shares the room key with every other member, so the key
// proves only that a packet comes from someone in the room; the host's
// word must be proved apart from it. A signature proves it to everyone,
// but checking one costs a member some 50 µs, at 100 lines a second (each
// line its own block) most of what a line costs it. A MAC is keyed by a
// secret the host shares with that one member (Welcome.MACKey, sent over
// the member's session), so a member can make its own MAC but no one
// else's, and checking it costs two hashes. The host MACs a small block when
// every member has a slot; a big block, whose signature is shared by its
// many lines, and a room of more members than slots, are signed.
const (
	AuthSig  = 1
	AuthMACs = 2

	// MACLen is the length of one member's MAC (HMAC-SHA256,
	// truncated): a forger's chance per try is 2^-64, and each try costs
	// it a packet the member drops.
	MACLen = 8
	// MaxMACSlots bounds a block's MACs, 128 bytes at most: a bigger room
	// signs. 32 members' MACs cost each block 258 bytes, four times a
	// signature, copied to every member: in a room of 32 at 1000 lines a
	// second the host's link carried 22 % more bytes and its CPU grew
	// 15 % a line (docs/BENCHMARKS.md).
	MaxMACSlots = 16
	// NoMACSlot is a Welcome's MAC slot when the member has none: its
	// room's blocks are signed while it is a member.
	NoMACSlot = 0xff

	// MACContext begins what a block's MACs are computed over: the
	// SHA-256 of MACContext ‖ room id ‖ the block's batches.
	MACContext = "meshd block macs v5 "
)

// BlockSigLen is what the host's signature adds to a block's batches.
const BlockSigLen = SigLen + 1

// BlockMACsLen is what n members' MACs add to a block's batches.
func BlockMACsLen(n int) int { return n*MACLen + 2 }

// AppendBlockSig appends the host's signature over a block's batches and
// its kind to the batches, b.
func AppendBlockSig(b, sig []byte) []byte {
	return append(append(b, sig...), AuthSig)
}

// AppendBlockMACs appends the MACs of a block's batches, b, and their
// count and kind: macs holds MACLen bytes for each of 1..MaxMACSlots
// slots.
func AppendBlockMACs(b, macs []byte) ([]byte, error) {
	n := len(macs) / MACLen
	if n == 0 || n > MaxMACSlots || len(macs)%MACLen != 0 {
		return b, fmt.Errorf("block MACs: %w: %d bytes", ErrInvalid, len(macs))
	}
	return append(append(b, macs...), byte(n), AuthMACs), nil
}

// BlockAuth is how a block's batches are authenticated: one of Sig and
// MACs is set.
type BlockAuth struct {
	Sig  []byte // the host's signature
	MACs []byte // MACLen bytes per slot, slot 0 first
}

// MAC returns slot's MAC, or nil if the block has none for it.
func (a BlockAuth) MAC(slot uint8) []byte {
	i := int(slot) * MACLen
	if i+MACLen > len(a.MACs) {
		return nil
	}
	return a.MACs[i : i+MACLen]
}

// SplitBlock splits a block's payload into its batches and how they are
// authenticated. The batches are not parsed (NextBlockBatch); neither
// the signature nor the MACs are checked.
func SplitBlock(payload []byte) (batches []byte, auth BlockAuth, err error) {
	if len(payload) < 1 {
		return nil, auth, fmt.Errorf("block: %w", ErrShort)
	}
	rest := payload[:len(payload)-1]
	switch kind := payload[len(payload)-1]; kind {
	case AuthSig:
		if len(rest) < 2+SigLen {
			return nil, auth, fmt.Errorf("block: %w", ErrShort)
		}
		n := len(rest) - SigLen
		return rest[:n], BlockAuth{Sig: rest[n:]}, nil
	case AuthMACs:
		if len(rest) < 1 {
			return nil, auth, fmt.Errorf("block: %w", ErrShort)
		}
		slots := int(rest[len(rest)-1])
		rest = rest[:len(rest)-1]
		if slots == 0 || slots > MaxMACSlots {
			return nil, auth, fmt.Errorf("block: %w: %d MACs", ErrInvalid, slots)
		}
		if len(rest) < 2+slots*MACLen {
			return nil, auth, fmt.Errorf("block: %w", ErrShort)
		}
		n := len(rest) - slots*MACLen
		return rest[:n], BlockAuth{MACs: rest[n:]}, nil
	default:
		return nil, auth, fmt.Errorf("block: %w: authentication kind %d", ErrInvalid, kind)
	}
}
