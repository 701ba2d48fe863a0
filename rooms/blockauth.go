package rooms

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"

	"meshd/rooms/wire"
)

// macBlockMax bounds the batches of a block the host MACs rather than
// signs (wire.AuthMACs): about 25 lines of 200 bytes. A bigger block
// holds lines enough to share one signature check, and there the
// signature's 65 bytes are fewer than the MACs' 8 a member.
const macBlockMax = 4 * wire.ShardData

// errNoMAC is a block MACed with none for this member: made before its
// session's slot was (the session is new), or after its slot was freed,
// which leaves zeros there (the session is ending), or while it had none.
// Not a forgery, though a forger can make one: either way the member
// drops the block, and its lines come over the session.
var errNoMAC = errors.New("block MACed for other members only")

// blockMAC is one member's key for the MACs of small blocks, and its slot
// in them: made by the host when it admits the member's session and sent
// to it in the Welcome, over that session only.
type blockMAC struct {
	slot uint8
	mac  hash.Hash // HMAC-SHA256 under the member's key
	sum  [sha256.Size]byte
}

func newBlockMAC(slot uint8, key [32]byte) *blockMAC {
	return &blockMAC{slot: slot, mac: hmac.New(sha256.New, key[:])}
}

// sumMAC returns the MAC of a block digest d, in bm's scratch.
func (bm *blockMAC) sumMAC(d *[sha256.Size]byte) []byte {
	bm.mac.Reset()
	bm.mac.Write(d[:])
	return bm.mac.Sum(bm.sum[:0])[:wire.MACLen]
}

// appendMAC appends the MAC of a block digest d to b.
func (bm *blockMAC) appendMAC(b []byte, d *[sha256.Size]byte) []byte {
	return append(b, bm.sumMAC(d)...)
}

// macContext is wire.MACContext as the hash takes it, made once.
var macContext = []byte(wire.MACContext)

// blockDigester computes what a block's MACs are computed over: the
// SHA-256 of the MAC context, the room id and the block's batches. A
// receiver and a room keep one, so that a block allocates nothing.
type blockDigester struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newBlockDigester() *blockDigester { return &blockDigester{h: sha256.New()} }

// digest returns the digest of room's block of batches, in bd's scratch.
func (bd *blockDigester) digest(room *[wire.RoomIDLen]byte, batches []byte) *[sha256.Size]byte {
	bd.h.Reset()
	bd.h.Write(macContext)
	bd.h.Write(room[:])
	bd.h.Write(batches)
	bd.h.Sum(bd.sum[:0])
	return &bd.sum
}

// slotLocked gives member m a slot in the room's block MACs and a fresh
// key for it, and returns both for its Welcome; with every slot taken it
// gets none (wire.NoMACSlot), and the room's blocks are signed until the
// member leaves.
func (s *Sequencer) slotLocked(m *hostSession) (uint8, [32]byte, error) {
	var key [32]byte
	for i, o := range s.macs {
		if o != nil {
			continue
		}
		if _, err := rand.Read(key[:]); err != nil {
			return 0, key, fmt.Errorf("block MAC key: %w", err)
		}
		s.macs[i], m.mac = m, newBlockMAC(uint8(i), key)
		return uint8(i), key, nil
	}
	s.unslotted++
	m.noSlot = true
	return wire.NoMACSlot, key, nil
}

// unslotLocked frees member m's slot, if it has one.
func (s *Sequencer) unslotLocked(m *hostSession) {
	if m.noSlot {
		s.unslotted--
		m.noSlot = false
	}
	if m.mac != nil && s.macs[m.mac.slot] == m {
		s.macs[m.mac.slot] = nil
	}
	m.mac = nil
}

// authBlockLocked appends to a block's batches how members check that
// the host sent them: each member's MAC where the block is small and
// every member has a slot, else the host's signature.
func (s *Sequencer) authBlockLocked(batches []byte) ([]byte, error) {
	slots := 0
	for i, m := range s.macs {
		if m != nil {
			slots = i + 1
		}
	}
	if slots == 0 || s.unslotted > 0 || len(batches) > macBlockMax {
		return signBlock(batches, s.host.cfg.Identity, s.bopts)
	}
	d := s.digest.digest(&s.id, batches)
	macs := s.macBuf[:0]
	for _, m := range s.macs[:slots] {
		if m == nil {
			macs = append(macs, make([]byte, wire.MACLen)...)
			continue
		}
		macs = m.mac.appendMAC(macs, d)
	}
	s.macBuf = macs
	return wire.AppendBlockMACs(batches, macs)
}
