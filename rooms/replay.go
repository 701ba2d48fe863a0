package rooms

import (
	"crypto/rand"
	"encoding/binary"
)

// replayWindow drops copies of a member's NACKs. Anyone on the link can
// capture a NACK and send it again; it opens as well as the original, so
// without this every copy would be charged to the member's repair budget
// and crowd out its real NACKs. A member numbers its NACKs 1, 2, … per
// session, and the window accepts each number once: numbers above the
// highest seen move the window forward, numbers within it are accepted if
// not yet seen (multicast reorders), and numbers that fell out of it are
// refused. It is the bitmap of RFC 6479 §2.3, as in wireguard-go's
// replay filter: a ring of 64-bit blocks, of which the one the highest
// number is in is partly ahead of the window, so that sliding the window
// clears whole blocks and never shifts bits. No clock is needed.
//
// The zero value is ready and has seen nothing. Not safe for concurrent
// use.
type replayWindow struct {
	last uint64 // the highest counter accepted
	ring [replayBlocks]uint64
}

const (
	replayBlockBits = 64
	replayBlocks    = 16 // 1024 bits
	// replayWindowSize is how far below the highest counter accepted a
	// counter can be and still be accepted: the ring less the block being
	// filled. 960 NACKs is minutes of a member's NACKs at their rate limit,
	// far beyond any reordering on a link.
	replayWindowSize = (replayBlocks - 1) * replayBlockBits
)

// accept reports whether counter is new, and marks it seen. Counter 0 is
// never sent (the wire refuses it) and is refused here too.
func (w *replayWindow) accept(counter uint64) bool {
	if counter == 0 {
		return false
	}
	block := counter / replayBlockBits
	if counter > w.last {
		cur := w.last / replayBlockBits
		// Clear the blocks the window slides over, at most the whole ring
		// however far the counter jumps.
		for i, n := cur+1, min(block-cur, replayBlocks); n > 0; i, n = i+1, n-1 {
			w.ring[i%replayBlocks] = 0
		}
		w.last = counter
	} else if w.last-counter > replayWindowSize {
		return false
	}
	bit := uint64(1) << (counter % replayBlockBits)
	b := &w.ring[block%replayBlocks]
	if *b&bit != 0 {
		return false
	}
	*b |= bit
	return true
}

// newNackSession draws a session id for a member's NACKs: random, so that
// a NACK of an earlier session, even one the host held before it
// restarted, does not name a later one; nonzero, which the wire requires.
func newNackSession() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:]) // never fails: it crashes the program instead
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}
