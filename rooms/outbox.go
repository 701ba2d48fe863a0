package rooms

import (
	"slices"
	"time"

	"meshd/rooms/wire"
)

// The host's send path. A room seals its packets under its lock, in
// sequence, and queues them in its outbox; they are written to the socket
// with the lock released, by whichever goroutine finds the outbox
// unattended as it unlocks the room (unlock). Writing under the lock made
// everything the room does wait for a full link: says, acks and NACKs
// stalled, the room looked quiet for as long as the socket blocked, and a
// busy room's blocks went out a few batches at a time, each with its own
// parity. Now lines go on being sequenced and gathered into blocks while
// the link drains, and only says wait for it (waitOutboxLocked), outside
// the lock: a sender learns of a full link as a slower answer, never as a
// lost line.
const (
	// outboxLimit is how many packets may wait in a room's outbox before
	// says wait for the link: about 40 ms of a 20 Mbit/s link, on top of
	// what the socket and the interface queue hold. A block of 128 data
	// and 32 parity shards may go past it; the next say waits.
	outboxLimit = 64
	// drainChunk is how many packets the drainer takes at a time, so
	// that says waiting for room see it as soon as some is made.
	drainChunk = 16
	// freePackets bounds the packet buffers a room keeps for reuse: a
	// busy room allocates none at full rate; a quiet one lets them go
	// (tick).
	freePackets = outboxLimit + drainChunk
)

// packetBufLocked returns an empty buffer of wire.MaxPacket bytes to seal
// a packet into.
func (s *Sequencer) packetBufLocked() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b[:0]
	}
	return make([]byte, 0, wire.MaxPacket)
}

// outPacket is a packet in the outbox, and the block it is a shard of
// (nil for a heartbeat), which counts it as unsent until it is written.
type outPacket struct {
	pkt []byte
	sb  *sentBlock
	no  uint64 // sb's number when queued: sb is reused for later blocks
}

// queueLocked puts a sealed packet, in a buffer from packetBufLocked, in
// the outbox, a shard of sb if sb is not nil; it returns the bytes queued.
func (s *Sequencer) queueLocked(pkt []byte, sb *sentBlock) int {
	s.lastSend = time.Now()
	s.outbox = append(s.outbox, s.outPacketLocked(pkt, sb))
	return len(pkt)
}

func (s *Sequencer) outPacketLocked(pkt []byte, sb *sentBlock) outPacket {
	p := outPacket{pkt: pkt, sb: sb}
	if sb != nil {
		sb.unsent++
		p.no = sb.no
	}
	return p
}

// queueFirstLocked puts a repair in the outbox ahead of the blocks
// waiting there, behind the repairs queued before it. A member waits for
// a repair: it holds up every line after the block it completes, and a
// repair that waited behind a full outbox, the socket and the interface's
// queue came after its member had asked again (nackRetry), which the host
// took for a new loss and answered with more shards, on a link that had
// no room for them.
func (s *Sequencer) queueFirstLocked(pkt []byte, sb *sentBlock) int {
	s.lastSend = time.Now()
	s.outbox = slices.Insert(s.outbox, s.first, s.outPacketLocked(pkt, sb))
	s.first++
	return len(pkt)
}

// unlock releases the room's lock, and writes the outbox if nobody else
// is: with the lock released, so that the room goes on while the link
// drains. Every path that may queue packets unlocks with it.
func (s *Sequencer) unlock() {
	if len(s.outbox) == 0 || s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	st := s.host.cfg.Stats
	for len(s.outbox) > 0 {
		n := min(len(s.outbox), drainChunk)
		chunk := append(s.chunk[:0], s.outbox[:n]...)
		s.outbox = s.outbox[:copy(s.outbox, s.outbox[n:])]
		s.first -= min(s.first, n)
		s.drained.Broadcast()
		s.mu.Unlock()
		start := time.Now()
		for _, p := range chunk {
			if err := s.host.cfg.Sender.WriteTo(p.pkt, s.group); err != nil {
				st.SendErrors.Add(1)
				s.host.log.Debug("multicast send failed", "room", s.ref, "err", err)
				continue
			}
			st.PacketsSent.Add(1)
		}
		took := time.Since(start)
		s.mu.Lock()
		s.writtenLocked(chunk)
		// A full chunk's writes block on a full link, and time it: the
		// pace repairDelayLocked reckons with. A short one is what was
		// left of a burst, written into a socket with room for it.
		if n == drainChunk {
			s.pace += (took/drainChunk - s.pace) / 4
		}
		clear(chunk)
		s.chunk = chunk[:0]
	}
	s.draining = false
	s.drained.Broadcast()
	s.mu.Unlock()
}

// writtenLocked counts packets taken from the outbox as written, and
// keeps their buffers for the next.
func (s *Sequencer) writtenLocked(ps []outPacket) {
	for _, p := range ps {
		if p.sb != nil && p.sb.no == p.no {
			p.sb.unsent--
		}
		if len(s.free) < freePackets {
			s.free = append(s.free, p.pkt)
		}
	}
}

// waitOutboxLocked waits, with the lock released meanwhile, until the
// outbox has room for a say's packets and no member is too far behind
// (holdsBackLocked), or the room closes.
func (s *Sequencer) waitOutboxLocked() {
	if s.closed || (len(s.outbox) < outboxLimit && !s.holdsBackLocked()) {
		return
	}
	s.host.cfg.Stats.SaysWaited.Add(1)
	s.sayWaiting++
	for !s.closed && (len(s.outbox) >= outboxLimit || s.holdsBackLocked()) {
		s.drained.Wait()
	}
	s.sayWaiting--
}

// Flow control. A member on multicast holds the records that come after
// a gap, up to maxPending of them, until a repair closes it; what comes
// further ahead it drops and fetches over its session once the gap
// closes. A host that says faster than its members' repairs close gaps
// overran them: at 30,000 lines a second (8 lines a say, no cap on the
// link), members dropped 44,000 records a run and fetched them, and the
// run took 6.5 s instead of 1.5. So says wait while a member whose acks
// show it moving is more than aheadLimit lines behind; one whose acked
// position has not moved for ackStale (gone, stuck on a gap it fetches,
// or on a link too poor to follow) does not hold the room back: it
// catches up over its session.
//
// A member that keeps up is still behind by what is on its way (the
// outbox, the link), the block it is decoding (a member acks a block's
// lines only once the whole block is rebuilt: up to 860 lines of 200
// bytes) and an ack's delay; at 20 Mbit/s that is near 2,000 lines, and
// with aheadLimit at half the window says waited for members that were
// doing fine and the link ran 80 % full. The window (maxPending) keeps
// ackSlack beyond aheadLimit: what a room of 10,000 lines a second says
// within ackDelay, by which a member's position may have moved on from
// its last ack.
const (
	ackSlack   = 2048
	aheadLimit = maxPending - ackSlack
	ackStale   = time.Second
)

// holdsBackLocked reports whether a member on multicast whose acked
// position moved within ackStale is more than aheadLimit lines behind.
func (s *Sequencer) holdsBackLocked() bool {
	if s.next <= aheadLimit {
		return false
	}
	behind := s.next - aheadLimit
	now := s.now()
	for _, m := range s.members {
		if !m.streaming && m.acked < behind && now.Sub(m.ackedAt) < ackStale {
			return true
		}
	}
	return false
}
