package rooms

import (
	"context"
	"errors"
	"math/bits"
	"math/rand/v2"
	"time"

	"meshd/rooms/secure"
	"meshd/rooms/wire"
)

// Tuning of a member's receive path.
const (
	// nackHold lets the rest of a block's shards, and the host's
	// proactive parity, arrive before a member asks for more; nackBackoff
	// spreads members' NACKs so that one can suppress the others.
	nackHold    = 10 * time.Millisecond
	nackBackoff = 15 * time.Millisecond
	// nackRetry is how long a member waits for a repair before it asks
	// again, or before asking after overhearing another member ask.
	nackRetry = 60 * time.Millisecond
	// fetchAfter is how long the next sequence number may be missing
	// before the member asks for it over its session, where it cannot be
	// lost: at least; where blocks take longer to complete (a slow link),
	// three times what they take, up to maxFetchAfter (receiver.fetchAfter).
	// Not less: a fetch puts a copy of what it asks for on the host's link
	// for each member, which on a slow link was what made it lose the
	// multicast (400 ms made a room of 16 members at 2 Mbit/s collapse
	// before any block had told a member how slow the link was).
	fetchAfter    = 2 * time.Second
	maxFetchAfter = 5 * time.Second
	fetchRetry    = time.Second
	maxFetch      = 1024
	// repairTick paces the repair timer while anything is missing.
	repairTick = 5 * time.Millisecond
	// ackDelay coalesces the acks a busy room would otherwise send per
	// line. Acks feed receipts ("seen by N of M"), the host's loss
	// estimate and its flow control, none of which a person notices
	// 200 ms later; at 20 ms a room at 100 lines a second cost each
	// member 50 acks a second, and the host's link carried more ack bytes
	// than chat. At 100 ms a full link's acks, and the host's TCP acks of
	// them, were 1.2 % of its bytes; at 200 ms 0.8 %.
	ackDelay = 200 * time.Millisecond
	// blockWindow bounds the blocks a member tracks; a member further
	// behind catches up by sequence number over its session. As many as
	// the host keeps for repairs (sentBlocks): older ones it cannot repair.
	blockWindow = sentBlocks
	maxPending  = 6144 // out-of-order records held per room (flow control: aheadLimit)
	maxReceipts = 256
	// Multicast that is silent for silentAfter, or loses more than
	// lossyAbove of its shards, sends the member to its session; it comes
	// back once multicast has been healthy for healthyFor. The host may
	// refuse a request for loss (when the whole room loses as much: its
	// own link); the member asks again for loss only after refusedHold.
	silentAfter = 3 * Heartbeat
	lossyAbove  = 0.5
	healthyFor  = 3 * time.Second
	healthyLoss = 0.2
	refusedHold = 10 * time.Second
	// The host weighs a member's loss against the rest of the room's, so
	// a reading must mean something: a second's window counts once it
	// covers minLossSample shards (a quiet room's windows add up until
	// then), the first reading is taken as it is, not averaged with an
	// assumed 0, and a member asks for loss only once lossyTicks readings
	// in a row were over lossyAbove. Otherwise, when a whole room starts
	// losing at once, the first member over the line, its estimate built
	// on a handful of shards, looked like an outlier against the others'
	// readings of a second earlier and was granted a copy of the room on
	// the very link that loses it.
	minLossSample = 50
	lossyTicks    = 2
)

// receiver is the receive state of a Member, guarded by its lock.
type receiver struct {
	// next is the sequence number to deliver next; highest is one past the
	// newest sequence number known to exist.
	next, highest uint64
	pending       map[uint64]wire.Record
	// gapSince is when next was first found missing, with a later number
	// known (gapAt is that next): the age of the oldest gap, not of the
	// run of gaps. In a busy lossy room some block is nearly always
	// incomplete; timing that run fetched over the session, every
	// fetchRetry, records that NACK repairs were about to bring.
	gapSince  time.Time
	gapAt     uint64
	nextFetch time.Time

	// Blocks below doneBelow are resolved; lastBlock is the newest known.
	// covered is the newest block whose records are all below highest: a
	// block decoded, or one a heartbeat named. With no sequence number
	// missing, an unseen block up to it holds nothing still needed; one
	// after it may hold records nobody has told the member of yet.
	doneBelow, lastBlock, covered uint64
	partials                      map[uint64]*partial
	repairArmed                   bool
	repairTimer                   *time.Timer

	// Loss accounting over the shards the host sent at first.
	lossSent, lossGot int
	loss              float64 // smoothed share of shards lost on multicast
	// repairTime is the smoothed time from a block's first shard to its
	// decoding, of blocks that lost data shards.
	repairTime time.Duration
	lossKnown  bool // loss holds a reading
	lossyRun   int  // readings in a row over lossyAbove
	lastMcast  time.Time
	mcastSince time.Time // start of the current run of healthy multicast
	streaming  bool      // the host granted the stream: the room comes over the session
	asked      bool      // a request for the stream awaits the host's answer
	refusedAt  time.Time // when the host last refused the stream

	ackArmed bool
	ackTimer *time.Timer
	receipts map[uint64]wire.Seen

	// Scratch space, so that a block that arrives whole, on a clean link
	// the common case, allocates nothing but its lines' texts and what
	// Ed25519 allocates inside.
	scratch []byte
	nonce   nonceBuf
	digest  *blockDigester // for blocks' MACs
	block   []byte
	recs    []wire.Record
	nack    wire.Nack
	free    []*partial // partials to reuse, their shard slices with them
	bufs    [][]byte   // shard buffers to reuse, of wire.MaxPacket bytes
	nicks   map[string]string
}

// partial is a block being rebuilt. k is 0 while the member knows of the
// block only from a later one.
type partial struct {
	k, sent, have int
	got           shardSet // the shard indexes received, kept after decoding to count loss
	shards        [][]byte
	// first is when the member heard of the block, last when its latest
	// shard came: a NACK waits until the block stops arriving.
	first, last, nackAt time.Time
	done                bool
	counted             bool  // in the loss estimate
	asked               uint8 // NACKs for it since its latest shard
}

// shardSet is a set of a block's shard indexes, below wire.MaxShards.
type shardSet [(wire.MaxShards + 63) / 64]uint64

func (s *shardSet) add(i uint8) { s[i/64] |= 1 << (i % 64) }

func (s *shardSet) has(i uint8) bool { return s[i/64]&(1<<(i%64)) != 0 }

// countBelow counts the indexes below n in s.
func (s *shardSet) countBelow(n int) int {
	c := 0
	for w, bitsOf := range s {
		switch lo := w * 64; {
		case n >= lo+64:
			c += bits.OnesCount64(bitsOf)
		case n > lo:
			c += bits.OnesCount64(bitsOf & (1<<(n-lo) - 1))
		}
	}
	return c
}

// keepResolved is how many resolved blocks a member remembers, so that
// their late shards count as received when it measures loss.
const keepResolved = 16

// Bounds on the scratch a receiver keeps: partials for the blocks it
// tracks, shard buffers for a few blocks of the largest size (a lossy
// link holds more, and those are freed), and a room's nicks.
const (
	maxFreePartials = blockWindow + keepResolved
	maxFreeBufs     = 2 * wire.MaxBlockShards
	maxNicks        = wire.MaxMembers
)

func newReceiver() receiver {
	return receiver{
		pending:  make(map[uint64]wire.Record),
		partials: make(map[uint64]*partial),
		receipts: make(map[uint64]wire.Seen),
		scratch:  make([]byte, 0, wire.MaxPacket),
		digest:   newBlockDigester(),
		nicks:    make(map[string]string),
	}
}

// newPartial returns an empty partial for a block first heard of at now.
func (rx *receiver) newPartial(now time.Time) *partial {
	if n := len(rx.free); n > 0 {
		p := rx.free[n-1]
		rx.free = rx.free[:n-1]
		*p = partial{first: now, last: now, shards: p.shards[:0]}
		return p
	}
	return &partial{first: now, last: now}
}

// dropPartial forgets block no, keeping its memory for reuse.
func (rx *receiver) dropPartial(no uint64, p *partial) {
	delete(rx.partials, no)
	rx.releaseShards(p)
	if len(rx.free) < maxFreePartials {
		rx.free = append(rx.free, p)
	}
}

// clearPartials forgets every block, keeping their memory for reuse.
func (rx *receiver) clearPartials() {
	for no, p := range rx.partials {
		rx.dropPartial(no, p)
	}
}

// releaseShards gives p's shard buffers back; p keeps its (emptied)
// slice of them.
func (rx *receiver) releaseShards(p *partial) {
	for i, s := range p.shards {
		if cap(s) == wire.MaxPacket && len(rx.bufs) < maxFreeBufs {
			rx.bufs = append(rx.bufs, s[:0])
		}
		p.shards[i] = nil
	}
	p.shards = p.shards[:0]
}

// shardBuf returns an empty buffer that holds any shard.
func (rx *receiver) shardBuf() []byte {
	if n := len(rx.bufs); n > 0 {
		b := rx.bufs[n-1]
		rx.bufs = rx.bufs[:n-1]
		return b
	}
	return make([]byte, 0, wire.MaxPacket)
}

// nick returns the string for a nick's bytes, the same one each time: a
// room has few nicks, and a line would otherwise cost a string for its
// sender's nick as well as for its text.
func (rx *receiver) nick(b []byte) string {
	if s, ok := rx.nicks[string(b)]; ok {
		return s
	}
	if len(rx.nicks) >= maxNicks {
		clear(rx.nicks)
	}
	s := string(b)
	rx.nicks[s] = s
	return s
}

// reset starts a new session: a new epoch numbers its blocks afresh.
func (rx *receiver) reset(next, block uint64, now time.Time) {
	rx.next, rx.highest = next, next
	rx.doneBelow, rx.lastBlock, rx.covered = block+1, block, block
	rx.clearPartials()
	rx.streaming, rx.asked, rx.refusedAt = false, false, time.Time{}
	rx.lastMcast, rx.mcastSince = now, now
}

// newEpoch forgets the blocks of the old epoch: the new one numbers its
// own from 1. Records of old blocks still missing arrive by sequence
// number over the session.
func (rx *receiver) newEpoch() {
	rx.doneBelow, rx.lastBlock, rx.covered = 1, 0, 0
	rx.clearPartials()
}

func (rx *receiver) seen(s *wire.Seen) {
	if len(rx.receipts) >= maxReceipts {
		for seq := range rx.receipts {
			if seq < s.Seq {
				delete(rx.receipts, seq)
			}
		}
	}
	rx.receipts[s.Seq] = *s
}

func (rx *receiver) stopTimers() {
	if rx.repairTimer != nil {
		rx.repairTimer.Stop()
	}
	if rx.ackTimer != nil {
		rx.ackTimer.Stop()
	}
}

// HandlePacket takes a packet of this room from multicast: a shard, a
// heartbeat, or another member's NACK. Drops are counted.
func (m *Member) HandlePacket(pkt []byte) {
	st := m.cfg.Stats
	typ, err := wire.PacketType(pkt)
	if err != nil {
		st.DataMalformed.Add(1)
		return
	}
	if typ == wire.TypeNack {
		m.overhear(pkt)
		return
	}
	h, err := parseSealed(pkt)
	if err != nil {
		st.DataMalformed.Add(1)
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case h.Room != wire.TagOf(m.id):
		st.DataNotJoined.Add(1)
		return
	case m.key == nil || h.Epoch != m.key.sealedEpoch():
		st.DataBadEpoch.Add(1)
		return
	}
	rx := &m.rx
	pt, err := openSealed(rx.scratch, &rx.nonce, m.key, &h, pkt)
	if err != nil {
		st.DataAuthFailed.Add(1)
		return
	}
	if now.Sub(rx.lastMcast) > silentAfter {
		rx.mcastSince = now
	}
	rx.lastMcast = now
	if h.Type == wire.TypeHeartbeat {
		hb, err := wire.ParseHeartbeat(pt)
		if err != nil {
			st.DataMalformed.Add(1)
			return
		}
		m.learnBlockLocked(hb.LastBlock)
		rx.highest = max(rx.highest, hb.Next)
		rx.covered = max(rx.covered, hb.LastBlock)
		m.armRepairLocked()
		m.sequenceStateLocked(now)
		return
	}
	m.shardLocked(h.shard, pt, now)
}

// learnBlockLocked notes that block b exists. A member more than a window
// of blocks behind gives up on the older ones: its session brings their
// records by sequence number.
func (m *Member) learnBlockLocked(b uint64) {
	rx := &m.rx
	if b <= rx.lastBlock {
		return
	}
	rx.lastBlock = b
	if b >= rx.doneBelow+blockWindow {
		rx.doneBelow = b - blockWindow + 1
		m.pruneLocked()
	}
}

// advanceLocked moves doneBelow past the blocks that are resolved, and
// forgets those resolved long enough ago. Blocks never seen count as
// resolved only when unseen is: when no sequence number is missing, their
// records came some other way.
func (m *Member) advanceLocked(unseen bool) {
	rx := &m.rx
	for rx.doneBelow <= rx.lastBlock {
		p := rx.partials[rx.doneBelow]
		if p == nil && !(unseen && rx.doneBelow <= rx.covered) || p != nil && !p.done {
			break
		}
		rx.doneBelow++
	}
	m.pruneLocked()
}

// pruneLocked forgets blocks more than keepResolved below doneBelow,
// adding what they tell of loss to the estimate: by then the late shards
// of their first transmission count as received. Until the first
// reading, a block counts as soon as it is resolved and a later block's
// shard came, which the host sent after all of its first transmission.
func (m *Member) pruneLocked() {
	rx := &m.rx
	for no, p := range rx.partials {
		switch {
		case no+keepResolved < rx.doneBelow:
			rx.countLoss(p)
			rx.dropPartial(no, p)
		case !rx.lossKnown && p.done && no < rx.lastBlock:
			rx.countLoss(p)
		}
	}
	if !rx.lossKnown && rx.lossSent >= minLossSample {
		// The first reading goes to the host at once, not at the next
		// once-a-second tick nor ackDelay later: until the host knows its
		// members lose shards it sends no parity and holds no block for
		// more batches, and a busy room that started lossy spent its
		// first second or two on small blocks repaired by NACK alone
		// (half a second of its blocks of 17 shards, before the reading
		// came from blocks keepResolved behind; then the quarter of a
		// second the ack waited).
		rx.loss, rx.lossKnown = 1-float64(rx.lossGot)/float64(rx.lossSent), true
		rx.lossSent, rx.lossGot = 0, 0
		m.ackAfterLocked(0)
	}
}

// countLoss adds what p's first transmission tells of loss to the
// estimate, once.
func (rx *receiver) countLoss(p *partial) {
	if p.k == 0 || p.counted {
		return
	}
	p.counted = true
	rx.lossSent += p.sent
	rx.lossGot += p.got.countBelow(p.sent)
}

func (m *Member) shardLocked(si wire.ShardInfo, shard []byte, now time.Time) {
	rx, st := &m.rx, m.cfg.Stats
	p := rx.partials[si.Block]
	if p == nil {
		if si.Block < rx.doneBelow {
			st.DataDuplicate.Add(1)
			return
		}
		m.learnBlockLocked(si.Block)
		p = rx.newPartial(now)
		rx.partials[si.Block] = p
	}
	if p.done {
		p.got.add(si.Index)
		st.DataDuplicate.Add(1)
		return
	}
	k := int(si.K)
	if p.k == 0 {
		if k > wire.MaxBlockShards {
			st.DataMalformed.Add(1)
			return
		}
		p.k, p.sent = k, int(si.Sent)
		// Any index below wire.MaxShards: a block's parity beyond
		// parityFor(k) is made when repairs have spent the rest.
		if cap(p.shards) < wire.MaxShards {
			p.shards = make([][]byte, wire.MaxShards)
		}
		p.shards = p.shards[:wire.MaxShards]
	}
	if p.k != k || int(si.Index) >= len(p.shards) {
		st.DataMalformed.Add(1)
		return
	}
	if p.shards[si.Index] != nil {
		st.DataDuplicate.Add(1)
		return
	}
	p.shards[si.Index] = append(rx.shardBuf(), shard...)
	p.have++
	p.got.add(si.Index)
	if p.have < p.k {
		// A big block takes tens of milliseconds to drain through a slow
		// link's queue (128 shards at 20 Mbit/s: 70 ms): a NACK while it
		// still arrives asks for shards on their way, and the repairs it
		// brings queue behind them. So each shard puts the NACK off.
		p.last, p.asked = now, 0
		if !p.nackAt.IsZero() && p.nackAt.Before(now.Add(nackHold)) {
			p.nackAt = now.Add(nackHold)
		}
		m.armRepairLocked()
		return
	}
	repaired := false
	for i, s := range p.shards[:p.k] {
		if s == nil {
			// Lost: rebuilt into a buffer of ours.
			p.shards[i] = rx.shardBuf()
			repaired = true
		}
	}
	batch, err := decodeBlock(p.shards, p.k, rx.block)
	p.done = true
	rx.releaseShards(p)
	if err != nil {
		st.DataMalformed.Add(1)
		return
	}
	rx.block = batch[:0]
	rx.covered = max(rx.covered, si.Block)
	st.BlocksDecoded.Add(1)
	if repaired {
		st.BlocksRepaired.Add(1)
		rx.sampleRepairTime(now.Sub(p.first))
	}
	m.blockLocked(batch, now)
	m.advanceLocked(false)
}

// blockLocked checks the host's signature over a decoded block's payload
// and takes its batches.
func (m *Member) blockLocked(payload []byte, now time.Time) {
	rx, st := &m.rx, m.cfg.Stats
	if m.bopts == nil {
		return
	}
	batches, err := verifyBlock(m.hostKey, m.bopts, &m.id, m.mac, rx.digest, payload)
	switch {
	case errors.Is(err, ErrBadSignature):
		st.DataBadSig.Add(1)
		return
	case errors.Is(err, errNoMAC):
		st.DataNoMAC.Add(1)
		return
	case err != nil:
		st.DataMalformed.Add(1)
		return
	}
	for len(batches) > 0 {
		body, rest, err := wire.NextBlockBatch(batches)
		if err != nil {
			st.DataMalformed.Add(1)
			return
		}
		bt, err := wire.ParseBlockBatch(body, rx.recs, rx.nick)
		m.takeBatchLocked(bt, err, now)
		batches = rest
	}
}

// batchLocked verifies a batch from the session and takes it.
func (m *Member) batchLocked(b []byte, now time.Time) {
	if m.opts == nil {
		return
	}
	bt, err := verifyBatch(m.hostKey, m.opts, b, m.rx.recs, m.rx.nick)
	if errors.Is(err, ErrBadSignature) {
		m.cfg.Stats.DataBadSig.Add(1)
		return
	}
	m.takeBatchLocked(bt, err, now)
}

// takeBatchLocked delivers what is next in sequence of a batch parsed
// with error err (counted if not nil), and holds the rest.
func (m *Member) takeBatchLocked(bt wire.Batch, err error, now time.Time) {
	rx, st := &m.rx, m.cfg.Stats
	if cap(bt.Records) > cap(rx.recs) {
		rx.recs = bt.Records[:0]
	}
	if err != nil {
		st.DataMalformed.Add(1)
		return
	}
	rx.highest = max(rx.highest, bt.First+uint64(len(bt.Records)))
	for i, rec := range bt.Records {
		seq := bt.First + uint64(i)
		switch {
		case seq < rx.next:
			st.DataDuplicate.Add(1)
		case seq == rx.next:
			m.deliverLocked(seq, rec)
		case seq-rx.next < maxPending:
			if _, dup := rx.pending[seq]; dup {
				st.DataDuplicate.Add(1)
			}
			rx.pending[seq] = rec
		default:
			// Too far ahead to hold; fetched once the gap before it closes.
			st.DataOutOfWindow.Add(1)
		}
	}
	m.drainLocked()
	m.sequenceStateLocked(now)
	// Acks follow deliveries, never the host's own acks: that would be a
	// ping-pong.
	m.ackSoonLocked()
}

// sequenceStateLocked notes whether the sequence has a gap, and when
// there is none, lets go of blocks known only by number: their records
// came some other way.
func (m *Member) sequenceStateLocked(now time.Time) {
	rx := &m.rx
	if rx.next < rx.highest {
		if rx.gapSince.IsZero() || rx.gapAt != rx.next {
			rx.gapSince, rx.gapAt = now, rx.next
		}
		m.armRepairLocked()
	} else {
		// With no sequence number missing, a block known only by number,
		// or left incomplete for longer than a fetch would take, holds
		// nothing still needed if a later block was decoded (or named by a
		// heartbeat): its records came over the session. A block after
		// every decoded one may hold records the member has yet to hear
		// of: giving it up because the records known so far are all there
		// left a block lost whole, while the bigger one after it still
		// arrived, to a fetch.
		rx.gapSince = time.Time{}
		for no, p := range rx.partials {
			if no <= rx.covered && (p.k == 0 || !p.done && now.Sub(p.first) > rx.fetchAfter()) {
				rx.dropPartial(no, p)
			}
		}
		m.advanceLocked(true)
	}
}

// drainLocked delivers the held records that are now next in sequence.
func (m *Member) drainLocked() {
	rx := &m.rx
	for {
		rec, ok := rx.pending[rx.next]
		if !ok {
			return
		}
		delete(rx.pending, rx.next)
		m.deliverLocked(rx.next, rec)
	}
}

func (m *Member) deliverLocked(seq uint64, rec wire.Record) {
	m.rx.next = seq + 1
	switch rec.Kind {
	case wire.KindJoin:
		m.members[rec.KeyID] = rec.Nick
	case wire.KindPart:
		delete(m.members, rec.KeyID)
	}
	m.cfg.Stats.DataDelivered.Add(1)
	m.cfg.Deliver(Delivery{Room: m.ref, Seq: seq, Record: rec})
}

// goneLocked takes the host's word that records are no longer held.
func (m *Member) goneLocked(g *wire.Gone) {
	if g.From <= m.rx.next && m.rx.next < g.To {
		m.gapLocked(g.To)
		m.drainLocked()
		m.sequenceStateLocked(time.Now())
		m.ackSoonLocked()
	}
}

// gapLocked gives up on the records before to, which the host no longer
// holds, and tells the user; nothing is skipped silently.
func (m *Member) gapLocked(to uint64) {
	rx := &m.rx
	from := rx.next
	for seq := range rx.pending {
		if seq < to {
			delete(rx.pending, seq)
		}
	}
	rx.next, rx.highest = to, max(rx.highest, to)
	m.cfg.Stats.DataLost.Add(int64(to - from))
	m.log.Warn("records lost: the host no longer holds them", "from", from, "through", to-1)
	if m.cfg.OnGap != nil {
		m.cfg.OnGap(m.ref, from, to-1)
	}
}

func (m *Member) armRepairLocked() {
	if m.rx.repairArmed || m.closed {
		return
	}
	m.rx.repairArmed = true
	// One timer for the member's life, re-armed: a new one per block
	// would be an allocation per packet.
	if m.rx.repairTimer == nil {
		m.rx.repairTimer = time.AfterFunc(repairTick, m.repair)
	} else {
		m.rx.repairTimer.Reset(repairTick)
	}
}

// repair asks for what is missing: repair shards by multicast NACK for
// incomplete blocks, after a hold and a random backoff; and, for a gap in
// the sequence that outlives fetchAfter, the records over the session.
func (m *Member) repair() {
	now := time.Now()
	m.mu.Lock()
	rx := &m.rx
	rx.repairArmed = false
	if m.closed || m.conn == nil {
		m.mu.Unlock()
		return
	}
	entries := m.nackEntriesLocked(now)
	var nack []byte
	if len(entries) > 0 && !rx.streaming && m.path != PathTCP {
		m.nackCounter++
		rx.nack.KeyID, rx.nack.Session, rx.nack.Counter, rx.nack.Entries = m.keyID, m.nackSession, m.nackCounter, entries
		body, err := wire.AppendNackBody(nil, &rx.nack)
		if err == nil {
			nack, err = sealNack(nil, m.key, m.id, body)
		}
		if err != nil {
			m.log.Warn("cannot make NACK", "err", err)
			nack = nil
		}
	}
	fetch := m.fetchLocked(now)
	if rx.next < rx.highest || rx.doneBelow <= rx.lastBlock && !rx.streaming {
		m.armRepairLocked()
	}
	conn, group := m.conn, m.group
	m.mu.Unlock()

	if nack != nil {
		if err := m.cfg.Sender.WriteTo(nack, group); err != nil {
			m.log.Debug("NACK", "err", err)
		} else {
			m.cfg.Stats.NacksSent.Add(1)
			m.cfg.Stats.NackBytesSent.Add(int64(len(nack)))
		}
	}
	if fetch != nil {
		if err := m.write(conn, fetch); err != nil {
			m.log.Debug("fetch", "err", err)
		}
	}
}

// nackEntriesLocked returns the blocks due a NACK at now (nackDueLocked),
// oldest first, at most wire.MaxNackEntries, and puts off each one's
// next NACK.
func (m *Member) nackEntriesLocked(now time.Time) []wire.NackEntry {
	rx := &m.rx
	var entries []wire.NackEntry
	for b := rx.doneBelow; b <= rx.lastBlock && len(entries) < wire.MaxNackEntries; b++ {
		p := rx.partials[b]
		if p == nil {
			p = rx.newPartial(now)
			rx.partials[b] = p
		}
		if p.done {
			continue
		}
		if !m.nackDueLocked(b, p, now) {
			continue
		}
		missing := uint8(wire.MissingAll)
		if p.k > 0 {
			missing = uint8(p.k - p.have)
		}
		entries = append(entries, wire.NackEntry{Block: b, Missing: missing})
		// Each NACK with no shard of the block since doubles the wait
		// for the next, up to 8 nackRetry, as TCP backs off its
		// retransmissions: on a slow link a repair takes longer than
		// nackRetry to come (250 to 450 ms at 1 Mbit/s), and a NACK sent
		// meanwhile only spends its member's rate and airtime.
		p.nackAt = now.Add(nackRetry << min(p.asked, 3))
		p.asked++
	}
	return entries
}

// sampleRepairTime adds how long a block that lost data shards took to
// complete to the smoothed estimate (the weight of TCP's SRTT, RFC 6298).
func (rx *receiver) sampleRepairTime(d time.Duration) {
	if rx.repairTime == 0 {
		rx.repairTime = d
		return
	}
	rx.repairTime += (d - rx.repairTime) / 8
}

// fetchAfter is how long a gap waits for multicast repairs before the
// member fetches it over its session: fetchAfter, or three times what a
// block that lost shards takes to complete. On a slow link a block of
// 128 shards takes most of a second to drain and its repairs as much
// again; members that fetched after 400 ms put a copy of the room each on
// the host's link, whose queue then dropped the multicast behind it: at
// 2 Mbit/s, 16 members at 10 % loss, 100 link bytes a payload byte and
// every member on its session, against 1.5 and none (BENCHMARKS.md,
// "Slow links").
func (rx *receiver) fetchAfter() time.Duration {
	return min(max(fetchAfter, 3*rx.repairTime), maxFetchAfter)
}

// fetchLocked returns the Fetch to send for a gap in the sequence that
// outlived fetchAfter, nil if none is due: from next to the newest
// number known, so that one round trip closes every gap behind it (a
// member whose repairs fail, at heavy loss, catches up by the fetch).
func (m *Member) fetchLocked(now time.Time) *wire.Fetch {
	rx := &m.rx
	if rx.next >= rx.highest || rx.gapSince.IsZero() || now.Sub(rx.gapSince) < rx.fetchAfter() || now.Before(rx.nextFetch) {
		return nil
	}
	rx.nextFetch = now.Add(fetchRetry)
	end := min(rx.highest, rx.next+maxFetch)
	if rx.lossKnown && rx.loss < lossyAbove {
		// Multicast mostly works: repairs bring what is missing further
		// on, and only the stuck run needs the session. Fetching all
		// from next sent each member its own copy of what multicast was
		// bringing: at 20 % loss in a busy room, half a byte on the
		// host's link per payload byte. Where multicast mostly fails,
		// the session carries the room, and asking for one run at a time
		// (a run a second) left a member ever further behind.
		for seq := rx.next + 1; seq < end; seq++ {
			if _, ok := rx.pending[seq]; ok {
				end = seq
			}
		}
	}
	return &wire.Fetch{From: rx.next, Count: uint16(end - rx.next)}
}

// overhear takes another member's NACK: a member that needs no more than
// it asked for holds its own NACK back, since the repair will serve both.
func (m *Member) overhear(pkt []byte) {
	h, err := wire.ParseNackHeader(pkt)
	if err != nil {
		m.cfg.Stats.NackMalformed.Add(1)
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	rx := &m.rx
	if m.key == nil || h.Room != m.id || h.Epoch != m.key.wireEpoch() {
		return
	}
	if err := openNack(rx.scratch, m.key, h, pkt, &rx.nack); err != nil {
		m.cfg.Stats.NackMalformed.Add(1)
		return
	}
	if rx.nack.KeyID == m.keyID {
		return
	}
	for _, e := range rx.nack.Entries {
		p := rx.partials[e.Block]
		if p == nil || p.done {
			continue
		}
		need := p.k - p.have
		if p.k == 0 || (e.Missing != wire.MissingAll && int(e.Missing) < need) {
			continue
		}
		p.nackAt = now.Add(nackRetry)
		m.cfg.Stats.NacksSuppressed.Add(1)
	}
}

// nackDueLocked reports whether block b, p, is to be asked for now: once
// it stopped arriving (nackHold and a backoff after its latest shard), and
// once the host has written the whole of its first transmission, whose
// last shard came, or a later block's did (the host queues a block's
// shards in order, after the block before it; only repairs go ahead of
// them). Before that a NACK counts shards still on their way: a host
// whose writes paused (a busy CPU) while a block went out drew NACKs for
// most of it, and sent repairs for shards that then arrived, a third of
// all repairs in a capacity run on a loaded machine. A block whose last
// shards are lost is asked for once nothing of the room came for
// nackRetry: repairs go ahead of a block's tail, and on a slow link
// (11 ms a shard at 1 Mbit/s) a round of them held it up for longer,
// whose members then asked for the rest of a block on its way.
func (m *Member) nackDueLocked(b uint64, p *partial, now time.Time) bool {
	if p.nackAt.IsZero() {
		p.nackAt = p.last.Add(nackHold + rand.N(nackBackoff))
	}
	if now.Before(p.nackAt) {
		return false
	}
	// A known k is at least 1, and sent at least k and at most 255.
	return p.k == 0 || p.got.has(uint8(p.sent-1)) || m.rx.lastBlock > b || !now.Before(m.rx.lastMcast.Add(nackRetry))
}

func (m *Member) ackSoonLocked() {
	if !m.rx.ackArmed {
		m.ackAfterLocked(ackDelay)
	}
}

// ackAfterLocked sends an ack d from now, whether or not one was due
// later.
func (m *Member) ackAfterLocked(d time.Duration) {
	if m.closed {
		return
	}
	m.rx.ackArmed = true
	if m.rx.ackTimer == nil {
		m.rx.ackTimer = time.AfterFunc(d, m.ack)
	} else {
		m.rx.ackTimer.Reset(d)
	}
}

// ack tells the host how far this member has got and what it loses.
func (m *Member) ack() {
	m.mu.Lock()
	m.rx.ackArmed = false
	conn := m.conn
	a := &wire.Ack{Seq: max(m.rx.next, 1) - 1, Loss: uint16(m.rx.loss * 1000)}
	m.mu.Unlock()
	if conn != nil {
		if err := m.write(conn, a); err != nil {
			m.log.Debug("ack", "err", err)
		}
	}
}

// keepalive runs beside a session: once a second it updates the loss
// estimate, reports it, and moves the member between multicast and its
// session as multicast fails or recovers. The report goes first, so that
// the host weighs a request for loss against this member's newest loss.
func (m *Member) keepalive(ctx context.Context, conn *secure.Conn) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	m.mu.Lock()
	tcp := m.path == PathTCP
	m.mu.Unlock()
	if tcp {
		m.requestStream(conn, &wire.Stream{On: true})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.mu.Lock()
			rx := &m.rx
			if rx.lossSent >= minLossSample {
				sample := 1 - float64(rx.lossGot)/float64(rx.lossSent)
				if rx.lossKnown {
					sample = 0.5*rx.loss + 0.5*sample
				}
				rx.loss, rx.lossKnown = sample, true
				rx.lossSent, rx.lossGot = 0, 0
				if rx.loss > lossyAbove {
					rx.lossyRun++
				} else {
					rx.lossyRun = 0
				}
			}
			req := m.pathRequestLocked(now)
			m.mu.Unlock()
			m.ack()
			if req != nil {
				m.requestStream(conn, req)
			}
		}
	}
}

// pathRequestLocked returns the Stream frame the member's path calls for
// now, or nil. Silence is always worth the stream: multicast does not
// reach this member. Loss is worth it only if the member's own link is to
// blame, which the host, seeing every member's loss, decides; after a
// refusal the member stays on multicast, repaired by NACKs and Fetch, and
// asks again for loss only after refusedHold. Silence after heavy loss
// counts as loss: once a busy room falls quiet, only a heartbeat a second
// is left to hear, and at over 50 % loss three in a row are lost often;
// that silence is the loss's, and the room likely shares it.
func (m *Member) pathRequestLocked(now time.Time) *wire.Stream {
	rx := &m.rx
	if rx.asked {
		return nil
	}
	silent := now.Sub(rx.lastMcast) > silentAfter
	heavy := rx.loss > lossyAbove
	switch {
	case m.path == PathTCP && !rx.streaming:
		return &wire.Stream{On: true}
	case m.path != PathAuto:
		return nil
	case !rx.streaming && silent && !heavy:
		return &wire.Stream{On: true}
	case !rx.streaming && heavy && rx.lossyRun >= lossyTicks && now.Sub(rx.refusedAt) >= refusedHold:
		return &wire.Stream{On: true, Lossy: true}
	case rx.streaming && !silent && now.Sub(rx.mcastSince) >= healthyFor && rx.loss < healthyLoss:
		return &wire.Stream{On: false}
	}
	return nil
}

// requestStream asks the host to send the room over the session, or to
// stop. Stopping takes effect at once; a start waits for the host's
// answer (streamAnswer). A start is marked as asked before it is written:
// the answer may be read before the write returns.
func (m *Member) requestStream(conn *secure.Conn, f *wire.Stream) {
	if f.On {
		m.mu.Lock()
		m.rx.asked = true
		m.mu.Unlock()
	}
	if err := m.write(conn, f); err != nil {
		m.mu.Lock()
		m.rx.asked = false
		m.mu.Unlock()
		return
	}
	if f.On {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rx.streaming {
		m.rx.streaming = false
		m.pathChangedLocked()
	}
}

// streamAnswer takes the host's answer to a request for the stream.
func (m *Member) streamAnswer(f *wire.Stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rx := &m.rx
	rx.asked = false
	if !f.On {
		rx.refusedAt = time.Now()
		m.cfg.Stats.StreamRefused.Add(1)
		m.log.Info("the host refused the stream: most of the room loses as much, so the loss is the host's link; staying on multicast, repaired by NACKs and fetches",
			"loss", rx.loss)
		return
	}
	if !rx.streaming {
		rx.streaming = true
		m.pathChangedLocked()
	}
}

func (m *Member) pathChangedLocked() {
	m.cfg.Stats.StreamSwitches.Add(1)
	path := PathMulticast
	if m.rx.streaming {
		path = PathTCP
	}
	m.log.Info("room path changed", "path", path)
}
