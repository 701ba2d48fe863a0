package rooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"meshd/rooms/wire"
)

// Tuning of the host's send path.
const (
	// FlushDelay is the longest a line waits for others to share its
	// batch: short enough that nobody notices, long enough that a burst
	// costs one signature and, in a quiet room, one block. A line that
	// finds the room quiet (no batch made for FlushDelay, nothing
	// pending) does not wait: it goes out at once, and the lines that
	// follow it within FlushDelay share the next batch.
	FlushDelay = 5 * time.Millisecond
	// busyFlushDelay is how long a line may wait instead when the room is
	// busy: the last busyWindow held busyLines lines or more (500 lines a
	// second), while lines keep coming. Nobody waits on a busy room's
	// lines to the millisecond; a room at 100 lines a second, even with
	// the bursts a stalled sender makes, keeps FlushDelay.
	busyFlushDelay = 20 * time.Millisecond
	// burstGap ends a busy room's batch early: a batch goes out once no
	// line has come for burstGap, so that it waits out a burst, not the
	// whole busyFlushDelay. Senders whose says wait for their batch send
	// nothing more until it goes, so each of their rounds waits out the
	// gap: with a line a say and 56 says in flight, 20 ms capped a room at
	// 1,900 lines a second, 2 ms at about 6,500, 0.5 ms at 7,500; with 8
	// lines a say (a paste, a relay), 2 ms and 0.5 ms both carry a 20
	// Mbit/s link full. Shorter, a room of 1,000 lines a second made a
	// packet of a line or two each millisecond, and each costs the host,
	// and every member, a wake-up: host CPU a line went from 172 to 200 µs
	// with one member and from 208 to 258 µs with 32 (a batch then waits
	// up to busyFlushDelay, p50 11 ms at that rate, against 2).
	burstGap   = 2 * time.Millisecond
	busyWindow = 100 * time.Millisecond
	busyLines  = 50
	// flushBytes flushes a batch early once it holds this much.
	flushBytes = 16 * wire.ShardData
	// A busy room whose members lose shards gathers its batches into one
	// block for up to blockHold, and sends it once no batch came for
	// blockIdle: a block of up to 128 shards at full rate, not one batch
	// of a few. The parity a block needs is what the unluckiest member
	// loses of it, a smaller share of a big block: with 16 members, at
	// 5 % loss about 9 % of 128 shards, 11 % of 64, 25 % of 8; at 20 %
	// loss about 34 % of 128, 38 % of 64, 55 % of 28. A block lost in
	// part is decoded only once it is complete, at most blockHold late in
	// a room where lines come every few milliseconds anyway. blockIdle
	// outlasts the pauses of a busy room's senders (a batch's senders wait
	// for its answer, a round trip of a few milliseconds); the last block
	// of a burst waits it out. A quiet room's batch is its block, and so
	// is every batch while no member reports loss and no say waits for the
	// link: a lone line is never held back, nor is a lossless room's.
	blockHold = 100 * time.Millisecond
	blockIdle = busyFlushDelay
	// repairWindow gathers the NACKs of several members for one block
	// before repairing it once, with the most any of them asked for.
	repairWindow = 5 * time.Millisecond
	// repairHold is how long the shards a block's repair sent count
	// against later NACKs for that block. NACKs sent before the repair
	// reached their members (members' backoff spreads them over 15 ms),
	// and those of members that lost the same shards, ask for what is on
	// its way already; answering each with more shards sent a room of 16
	// members at 50 % loss five repairs for every new shard, several times
	// what its link carried. Shorter than nackRetry, so that a member
	// that lost the repair too is answered when it asks again: a longer
	// hold (120 ms was tried) kept blocks unresolved until members, a
	// 128-block window behind, gave up on them and fetched every record
	// over their sessions, sixteen copies on the same link. It is the
	// least hold: a slow link's is as long as the link takes to carry
	// the repair (repairDelayLocked).
	repairHold = nackRetry / 2
	// sendQueued is how many packets the host's link holds once its
	// socket blocks: the data socket's send buffer takes about 7 shards
	// (daemon.dataSendBuffer), and the interface's queue holds them.
	sendQueued = 8
	// sentBlocks is how many recent blocks the host can repair with fresh
	// parity; older gaps are served as batches over members' sessions.
	// At full rate that is over a second of a busy room (a block is up to
	// 64 data and 32 parity shards: 4 MiB for all of them).
	sentBlocks = 32
	// quietBlocks is how long after its last block a quiet room keeps its
	// sent blocks: past the heartbeat that shows a member a lost last
	// block and the NACKs that follow. Then it lets them go (a busy host's
	// quiet rooms would each keep 128); a member that still lacks one
	// fetches it over its session.
	quietBlocks = 5 * Heartbeat
	// reserveStep is how far ahead sequence numbers are reserved on disk:
	// one durable write per reserveStep lines.
	reserveStep = 1024
	// receiptWatches bounds, per member, the lines whose receipts the host
	// reports back to it.
	receiptWatches = 64
	// An epoch key is replaced after rekeyPackets packets or rekeyAge,
	// whichever comes first, so that a key that leaked stops being
	// useful, and long before its 24-bit block numbers and 32-bit
	// heartbeat counters, which make the nonces (seal.go), could run
	// out: tick checks the count four times a second, and a link would
	// have to carry 2^23 packets between two checks.
	rekeyPackets = 1 << 23
	rekeyAge     = time.Hour
	// memberIdle ends the session of a member that sent nothing, not even
	// its once-a-second ack, for this long.
	memberIdle = 10 * time.Second
	// ackAnswerEvery paces the host's answers to a member's acks.
	ackAnswerEvery = 500 * time.Millisecond
	// kickBan is how long a kicked member may not rejoin; a ban lasts
	// until the host restarts.
	kickBan = 10 * time.Minute
	// lossDecay forgets old loss reports, per Tick (4 a second): the
	// estimate halves in about 10 s without a higher one.
	lossDecay = 0.983
)

// Sequencer is the host side of one room: the only place its sequence
// numbers are assigned. Safe for concurrent use.
type Sequencer struct {
	host   *Host
	name   string
	ref    string
	id     [wire.RoomIDLen]byte
	keyID  [wire.KeyIDLen]byte
	group  netip.AddrPort
	opts   *ed25519.Options // batches'
	bopts  *ed25519.Options // blocks'
	store  Store
	serial uint64
	// hole is the range between the end of the log and where the room
	// resumed, when a reboot lost the log's tail: numbers that were
	// reserved and maybe used, and are declared lost to anyone asking.
	holeFrom, holeTo uint64

	mu         sync.Mutex
	key        *epochKey
	rekeys     uint32
	counter    uint64 // packets sealed under key; a heartbeat's nonce (sealHeartbeat)
	next       uint64 // the next sequence number to assign
	reserved   uint64 // sequence numbers below this are reserved on disk
	pending    []wire.Record
	pendingLen int         // the pending records' bytes in a batch body, sender table included
	senders    []int       // the pending records that first name each of the batch's senders
	flushTimer *time.Timer // made once, re-armed: not an allocation per block
	flushArmed bool
	batchSince time.Time // when the pending batch's first line came, in a busy room
	busy       bool      // the last busyWindow held busyLines lines or more
	winStart   time.Time // the current busyWindow began
	winLines   int       // lines submitted since winStart
	lastFlush  time.Time // when the last batch was made
	now        func() time.Time
	// The block being filled: its payload (batches, each behind its
	// length), its records, when its first batch came.
	open       []byte
	openRecs   int
	openSince  time.Time
	blockTimer *time.Timer // made once, re-armed, as flushTimer
	blockArmed bool
	block      uint64 // the newest block of this epoch
	blocks     [sentBlocks]*sentBlock
	repairTmr  *time.Timer
	loss       float64 // the worst recent loss a multicast member reported
	lastSend   time.Time
	members    map[[wire.KeyIDLen]byte]*hostSession
	// Members' slots in small blocks' MACs (blockauth.go); unslotted
	// counts the members that found none free. digest and macBuf are the
	// MACs' scratch.
	macs      [wire.MaxMACSlots]*hostSession
	unslotted int
	digest    *blockDigester
	macBuf    []byte
	lastAddr  []netip.AddrPort
	watches   []watch // the hosting user's lines awaiting receipts
	rotatedAt time.Time
	// The pending batch's senders, answered once it is logged.
	unanswered []answer
	logged     chan struct{}                     // closed when the pending batch is logged
	banned     map[[wire.KeyIDLen]byte]time.Time // zero time: until restart
	access     *accessState
	muted      map[[wire.KeyIDLen]byte]bool // members whose lines the host refuses
	buf        []byte                       // scratch for opening NACKs
	nonce      nonceBuf
	closed     bool
	// The send path (outbox.go): packets sealed, oldest first, and not
	// yet written; buffers to seal the next ones into; whether a
	// goroutine is writing the outbox, and the chunk it writes.
	outbox   []outPacket
	first    int // the repairs at the front of outbox
	free     [][]byte
	draining bool
	chunk    []outPacket
	// pace is the smoothed time a packet of a full chunk took to write:
	// on a full link, the time the link takes to carry one.
	pace time.Duration
	// sayWaiting counts says waiting for the outbox to drain.
	sayWaiting int
	drained    sync.Cond // broadcast as the outbox empties
}

// answer is a Said waiting for its line's batch to reach the log.
type answer struct {
	m    *hostSession
	said *wire.Said
}

// sentBlock is a block the host can still repair.
type sentBlock struct {
	no     uint64
	k      int
	shards [][]byte // k data, then parity
	sent   int      // shards sent at first
	next   int      // the next shard a repair sends
	unsent int      // shards first sent that are in the outbox, not yet written
	asked  int      // the most shards a NACK asked for within repairWindow
	// The repair round in progress: repaired shards sent since
	// repairedAt, which count against NACKs until hold after it, when
	// the last of them can have reached members.
	repaired   int
	repairedAt time.Time
	hold       time.Duration
}

func newSequencer(h *Host, name string, id [wire.RoomIDLen]byte, store Store, access *accessState) *Sequencer {
	start := max(store.Start(), 1)
	holeFrom := store.Next()
	if holeFrom == 0 || holeFrom > start {
		holeFrom = start
	}
	s := &Sequencer{
		holeFrom: holeFrom,
		holeTo:   start,
		host:     h,
		name:     name,
		ref:      Ref(h.cfg.Identity.Pub, name),
		id:       id,
		keyID:    KeyID(h.cfg.Identity.Pub),
		group:    DataGroup(h.cfg.DataGroups, id, h.cfg.DataPort),
		opts:     batchOpts(id),
		bopts:    blockOpts(id),
		store:    store,
		serial:   Epoch(h.cfg.Boot, 0),
		next:     start,
		reserved: start,
		now:      time.Now,
		banned:   make(map[[wire.KeyIDLen]byte]time.Time),
		access:   access,
		muted:    make(map[[wire.KeyIDLen]byte]bool),
		members:  make(map[[wire.KeyIDLen]byte]*hostSession),
		digest:   newBlockDigester(),
		buf:      make([]byte, 0, wire.MaxPacket),
	}
	s.drained.L = &s.mu
	return s
}

// Name returns the room's name.
func (s *Sequencer) Name() string { return s.name }

// Ref returns the room's name@fingerprint.
func (s *Sequencer) Ref() string { return s.ref }

// Group returns the room's data group.
func (s *Sequencer) Group() netip.AddrPort { return s.group }

// ID returns the room id its packets carry.
func (s *Sequencer) ID() [wire.RoomIDLen]byte { return s.id }

// LastSeq returns the newest sequence number assigned.
func (s *Sequencer) LastSeq() uint64 {
	s.mu.Lock()
	defer s.unlock()
	return s.next - 1
}

func (s *Sequencer) rekeyLocked() error {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("epoch key: %w", err)
	}
	k, err := newEpochKey(Epoch(s.host.cfg.Boot, s.rekeys), raw)
	if err != nil {
		return err
	}
	s.rekeys++
	s.key, s.counter = k, 0
	s.block, s.blocks = 0, [sentBlocks]*sentBlock{}
	s.rotatedAt = time.Now()
	return nil
}

// rotateLocked starts a new epoch: what is pending goes out under the old
// key, then every member still in the room gets the new key over its
// session. A member that left, or was removed, reads nothing after.
func (s *Sequencer) rotateLocked() {
	s.flushLocked()
	s.sendBlockLocked()
	if err := s.rekeyLocked(); err != nil {
		s.host.log.Error("cannot rotate the room key", "room", s.ref, "err", err)
		return
	}
	rk := &wire.Rekey{Epoch: s.key.epoch, Key: s.key.key}
	for _, m := range s.members {
		m.send(rk)
	}
	s.host.cfg.Stats.Rekeys.Add(1)
}

// ErrNoSuchMember means no member of the room has that nick.
var ErrNoSuchMember = errors.New("no such member")

// Kick removes the member called nick: its session ends, its part is
// sequenced, the room's key rotates so that it can read nothing said
// afterwards, and it may not rejoin for a while, or, with ban, until the
// host restarts. Its key leaves the room's allowlist: to come back to an
// invite-only room it needs a new invite.
func (s *Sequencer) Kick(nick string, ban bool) error {
	s.mu.Lock()
	defer s.unlock()
	for _, m := range s.members {
		if m.nick != nick {
			continue
		}
		until := time.Time{}
		if !ban {
			until = time.Now().Add(kickBan)
		}
		s.banned[m.keyID] = until
		if s.access.allowed(m.pub) {
			s.access.forget(m.pub)
			if err := s.saveAccessLocked(); err != nil {
				s.host.log.Warn("cannot save the room's allowlist; the kicked key is back on it after a restart", "room", s.ref, "err", err)
			}
		}
		s.dropLocked(m)
		s.rotateLocked()
		s.host.log.Info("member removed", "room", s.ref, "nick", nick, "ban", ban)
		return nil
	}
	return fmt.Errorf("%w called %q in room %s (see \"meshctl who %s\")", ErrNoSuchMember, nick, s.ref, s.name)
}

// Access returns who the room admits.
func (s *Sequencer) Access() Access {
	s.mu.Lock()
	defer s.unlock()
	return s.access.mode
}

// Invite issues a token that admits uses members to the room, which must
// be invite-only, until ttl from now; each member it admits is put on the
// allowlist. It returns the invite as members' daemons take it,
// name@fingerprint/TOKEN.
func (s *Sequencer) Invite(uses int, ttl time.Duration) (invite string, expires time.Time, err error) {
	s.mu.Lock()
	defer s.unlock()
	now := time.Now()
	token, err := s.access.issue(s.ref, uses, ttl, now)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := s.saveAccessLocked(); err != nil {
		// An invite the host would forget at a restart is not issued.
		delete(s.access.invites, sha256.Sum256(token))
		return "", time.Time{}, fmt.Errorf("room %s: save invite: %w", s.ref, err)
	}
	s.host.log.Info("invite issued", "room", s.ref, "uses", uses, "expires", now.Add(ttl))
	return s.ref + "/" + FormatToken(token), now.Add(ttl), nil
}

// SetAccess changes whom the room admits, for joins from now on: members
// already in stay (kick those who should not). Invites issued and the keys
// they admitted are kept, and count again whenever the room is
// invite-only. A changed access is announced under a new serial.
func (s *Sequencer) SetAccess(cfg RoomAccess) error {
	acc, err := newAccessState(s.host.cfg.Identity.Pub, s.name, cfg, nil)
	if err != nil {
		return fmt.Errorf("room %s: %w", s.ref, err)
	}
	s.mu.Lock()
	defer s.unlock()
	if acc.mode != s.access.mode {
		// Announcements that differ must not share a serial.
		s.serial++
	}
	acc.admitted, acc.invites = s.access.admitted, s.access.invites
	s.access = acc
	s.host.log.Info("room access changed", "room", s.ref, "access", acc.mode)
	return nil
}

func (s *Sequencer) saveAccessLocked() error {
	b, err := s.access.encode()
	if err != nil {
		return err
	}
	return s.store.SaveAccess(b)
}

// Mute makes the host refuse the lines of the member called nick, with an
// error back to it, until Unmute; the member still receives the room, and
// stays muted if it rejoins.
func (s *Sequencer) Mute(nick string, mute bool) error {
	s.mu.Lock()
	defer s.unlock()
	for _, m := range s.members {
		if m.nick != nick {
			continue
		}
		if mute {
			s.muted[m.keyID] = true
		} else {
			delete(s.muted, m.keyID)
		}
		s.host.log.Info("member muted", "room", s.ref, "nick", nick, "muted", mute)
		return nil
	}
	return fmt.Errorf("%w called %q in room %s (see \"meshctl who %s\")", ErrNoSuchMember, nick, s.ref, s.name)
}

// Say sequences a line from the hosting user.
func (s *Sequencer) Say(text string) (uint64, error) {
	if err := ValidateText(text); err != nil {
		return 0, err
	}
	first, _, err := s.sayLines([]string{text})
	return first, err
}

// SayLines sequences lines from the hosting user, each a message of its
// own, one after another with no other line between them: a paste stays
// together, and a front end relaying a busy source pays one request, not
// one a line. It returns the first and last lines' sequence numbers.
// No line is sequenced unless every one is valid; if the room fails
// partway (it is closing, or its log cannot reserve numbers), the error
// says which were.
func (s *Sequencer) SayLines(texts []string) (first, last uint64, err error) {
	if len(texts) == 0 {
		return 0, 0, errors.New("no lines to say")
	}
	for i, text := range texts {
		if err := ValidateText(text); err != nil {
			return 0, 0, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	first, n, err := s.sayLines(texts)
	if n == 0 {
		return 0, 0, err
	}
	last = first + uint64(n) - 1
	if err != nil {
		err = fmt.Errorf("lines 1 to %d were sent, as #%d to #%d; line %d: %w", n, first, last, n+1, err)
	}
	return first, last, err
}

// sayLines submits valid texts and waits until the last is logged; it
// returns the first's sequence number and how many it submitted.
func (s *Sequencer) sayLines(texts []string) (first uint64, n int, err error) {
	s.mu.Lock()
	s.waitOutboxLocked()
	for _, text := range texts {
		var seq uint64
		seq, err = s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: s.host.Nick(), Text: text})
		if err != nil {
			break
		}
		if n == 0 {
			first = seq
		}
		n++
		if len(s.members) > 0 {
			s.watches = addWatch(s.watches, seq)
		}
	}
	var logged chan struct{}
	if n > 0 && len(s.pending) > 0 {
		if s.logged == nil {
			s.logged = make(chan struct{})
		}
		logged = s.logged
	}
	s.unlock()
	// Accepted means logged: a crash after this loses nothing. (Lines
	// whose batch went out at once were logged already, and logged is
	// nil; so were those of any batch they filled.)
	if logged != nil {
		<-logged
	}
	return first, n, err
}

func addWatch(ws []watch, seq uint64) []watch {
	if len(ws) == receiptWatches {
		ws = ws[1:]
	}
	return append(ws, watch{seq: seq, seen: 1})
}

// updateWatches reports changed receipt counts through report and keeps
// the lines that some member still lacks.
func (s *Sequencer) updateWatchesLocked(ws []watch, report func(seq uint64, seen, of int)) []watch {
	kept := ws[:0]
	for _, w := range ws {
		seen, of := s.receiptLocked(w.seq)
		if seen != w.seen {
			w.seen = seen
			report(w.seq, seen, of)
		}
		if seen < of {
			kept = append(kept, w)
		}
	}
	return kept
}

// submitLocked gives rec the next sequence number and queues it for the
// next block; it is delivered to the hosting user at once.
func (s *Sequencer) submitLocked(rec wire.Record) (uint64, error) {
	if s.closed {
		return 0, errors.New("the room is closing")
	}
	seq := s.next
	if seq >= s.reserved {
		// Durable before use: after any crash the host resumes above it.
		if err := s.store.Reserve(seq + reserveStep); err != nil {
			return 0, fmt.Errorf("room %s: reserve sequence numbers: %w", s.ref, err)
		}
		s.reserved = seq + reserveStep
	}
	newSender := s.newSenderLocked(&rec)
	n := s.pendingLen + wire.RecordLen(&rec, newSender)
	senders := len(s.senders)
	if newSender {
		senders++
	}
	switch {
	case len(s.pending) > 0 && len(s.open) > 0 && wire.BlockBatchLen(n, len(s.pending)+1, senders) > s.openRoomLocked():
		// The open block can take the pending batch, but not with this
		// line: the batch fills it, and it goes. A batch cut at
		// flushBytes alone left a quarter of each block empty.
		s.flushLocked()
		s.sendBlockLocked()
		newSender = true
	case len(s.pending) == wire.MaxRecords || n > flushBytes:
		s.flushLocked()
		newSender = true
	}
	s.next++
	if newSender {
		s.senders = append(s.senders, len(s.pending))
	}
	s.pending = append(s.pending, rec)
	s.pendingLen += wire.RecordLen(&rec, newSender)
	s.host.cfg.Deliver(Delivery{Room: s.ref, Seq: seq, Record: rec})
	s.countLineLocked()
	now := s.now()
	quiet := FlushDelay
	if s.busy {
		quiet = busyFlushDelay
	}
	switch {
	case s.pendingLen >= flushBytes:
		s.flushLocked()
	case len(s.pending) == 1 && now.Sub(s.lastFlush) >= quiet:
		// A quiet room: nothing else is pending and no batch was made
		// lately, so waiting would only delay this line. (In a busy
		// room a pause shorter than busyFlushDelay is not quiet: the
		// senders of the last batch are still answering.) Its block
		// goes as flushLocked decides: in a busy lossy room, a pause
		// is more often the host's own (blocked on a full link) than
		// the senders', and sending the block then made blocks of a
		// line or a batch, at three times the parity per shard.
		s.flushLocked()
	case !s.flushArmed && s.busy:
		s.batchSince = now
		s.armFlushLocked(burstGap)
	case !s.flushArmed:
		s.armFlushLocked(FlushDelay)
	case s.busy && now.Sub(s.batchSince)+burstGap <= busyFlushDelay:
		// The burst goes on: the batch waits burstGap more, up to
		// busyFlushDelay after its first line.
		s.flushTimer.Reset(burstGap)
	}
	return seq, nil
}

// openRoomLocked is how many bytes of records, sender table included, a
// batch may take in the open block (wire.BlockBatchLen).
func (s *Sequencer) openRoomLocked() int {
	return wire.MaxBlock - len(s.open) - 2 - wire.BatchHeaderLen - wire.BlockSigLen
}

func (s *Sequencer) armFlushLocked(d time.Duration) {
	s.flushArmed = true
	if s.flushTimer == nil {
		s.flushTimer = time.AfterFunc(d, s.flush)
	} else {
		s.flushTimer.Reset(d)
	}
}

// countLineLocked counts a line in the current busyWindow; at the end of
// a window, whether it held busyLines lines (at the same rate, if the
// window ran longer) makes the room busy or not for the next. A window
// that reaches busyLines makes it busy at once: a room that burst into
// full rate sent the blocks of its first window as its batches came (80
// and 90 shards, in a capacity run), not held to fill.
func (s *Sequencer) countLineLocked() {
	now := s.now()
	if elapsed := now.Sub(s.winStart); elapsed >= busyWindow {
		// A window that ran a second or more was no busy room's (and
		// its length times busyLines could overflow).
		s.busy = elapsed < time.Second && int64(s.winLines)*int64(busyWindow) >= busyLines*int64(elapsed)
		s.winStart, s.winLines = now, 0
	}
	s.winLines++
	s.busy = s.busy || s.winLines >= busyLines
}

// newSenderLocked reports whether rec's sender (key id and nick) is not
// yet in the pending batch's sender table.
func (s *Sequencer) newSenderLocked(rec *wire.Record) bool {
	for _, i := range s.senders {
		if p := &s.pending[i]; p.KeyID == rec.KeyID && p.Nick == rec.Nick {
			return false
		}
	}
	return true
}

func (s *Sequencer) flush() {
	s.mu.Lock()
	defer s.unlock()
	s.flushArmed = false
	s.flushLocked()
}

// flushLocked signs the pending records as one batch, logs it, and adds
// it to the block that goes out on multicast: at once, or within
// blockHold in a busy room whose members lose shards. Members that
// multicast does not reach get the batch over their sessions at once.
func (s *Sequencer) flushLocked() {
	if s.flushArmed {
		// A timer that fired already and waits for the lock finds
		// nothing pending, or flushes a newer batch a little early.
		s.flushTimer.Stop()
		s.flushArmed = false
	}
	if len(s.pending) == 0 {
		return
	}
	s.lastFlush = s.now()
	first := s.next - uint64(len(s.pending))
	recs := s.pending
	// The batch's exact size: its header (first, count), the records as
	// submitLocked counted them, the signature.
	size := wire.BatchHeaderLen + s.pendingLen + wire.SigLen
	senders := len(s.senders)
	s.pending, s.pendingLen, s.senders = s.pending[:0], 0, s.senders[:0]
	// Whatever happens below, the lines are answered: the senders learn
	// their place once the batch is in the log, not before.
	defer s.answerLocked()
	// The batch is not reused: the store and members' session queues may
	// keep it.
	batch, err := signBatch(make([]byte, 0, size), s.host.cfg.Identity, s.opts, first, recs)
	if err != nil {
		s.host.log.Error("cannot sign batch; its lines are lost", "room", s.ref, "first", first, "err", err)
		return
	}
	if err := s.store.Append(first, len(recs), batch); err != nil {
		s.host.log.Error("cannot log batch", "room", s.ref, "first", first, "err", err)
	}
	for _, m := range s.members {
		if m.streaming {
			m.catchUp(first, s.next)
		}
	}
	// On multicast the batch goes without its signature, under the
	// block's.
	body := batch[:len(batch)-wire.SigLen]
	if len(s.open)+2+wire.BlockBatchLen(len(body), len(recs), senders)+wire.BlockSigLen > wire.MaxBlock {
		// A batch flushed for its own reasons (flushBytes, a timer) that
		// the open block cannot take.
		s.sendBlockLocked()
	}
	if len(s.open) == 0 {
		s.openSince = s.lastFlush
	}
	s.open = wire.AppendBlockBatch(s.open, body)
	s.openRecs += len(recs)
	// A block is held for others where members lose shards, or while
	// says wait for the link. With no loss reported and the link free, a
	// bigger block saves no parity, and holding it would only delay every
	// line (at 1,000 lines a second, p50 went from 40 to 160 ms). But
	// says that wait are delayed by the link anyway, and a room filling
	// its link before its members' first loss reports sent a block a
	// batch (17 shards), each to be repaired for the unluckiest
	// member at twice the share of a full block.
	hold := s.holdLocked(s.lastFlush)
	if _, loss := s.multicastLossLocked(); hold <= 0 || s.sayWaiting == 0 && (!s.busy || loss == 0) {
		s.sendBlockLocked()
		return
	}
	s.blockArmed = true
	if s.blockTimer == nil {
		s.blockTimer = time.AfterFunc(hold, s.sendBlock)
	} else {
		s.blockTimer.Reset(hold)
	}
}

func (s *Sequencer) sendBlock() {
	s.mu.Lock()
	defer s.unlock()
	s.blockArmed = false
	// Says waiting for the link are no pause of the room's: its senders
	// are there, held back by the host's own link. Sending the block then
	// sent a batch or two a block, at several times the parity a line,
	// for as long as the link was full.
	if hold := s.holdLocked(s.now()); s.sayWaiting > 0 && hold > 0 && len(s.open) > 0 {
		s.blockArmed = true
		s.blockTimer.Reset(hold)
		return
	}
	s.sendBlockLocked()
}

// holdLocked is how long from now the open block may wait for more
// batches: blockIdle, up to blockHold after it opened; past that, while
// the outbox holds a chunk or more for the link, blockIdle again. The block could go no sooner than the queue ahead of it drains:
// on a slow link blockHold cut blocks of about 20 shards, repaired for
// the unluckiest member at several times the parity a shard of a full
// block (at 1 Mbit/s a chunk is 165 ms of the link).
func (s *Sequencer) holdLocked(now time.Time) time.Duration {
	left := blockHold - now.Sub(s.openSince)
	if left <= 0 && len(s.outbox) >= drainChunk {
		return blockIdle
	}
	return min(blockIdle, left)
}

// sendBlockLocked multicasts the open block, its batches coded as one FEC
// block, with the proactive parity that the loss members report calls
// for.
func (s *Sequencer) sendBlockLocked() {
	if s.blockArmed {
		s.blockTimer.Stop()
		s.blockArmed = false
	}
	if len(s.open) == 0 {
		return
	}
	recs := s.openRecs
	payload, err := s.authBlockLocked(s.open)
	s.open, s.openRecs = s.open[:0], 0
	if err != nil {
		s.host.log.Error("cannot sign block; members get its lines over their sessions", "room", s.ref, "err", err)
		return
	}
	// The block falling out of the repair window lends its memory.
	sb := s.blocks[(s.block+1)%sentBlocks]
	if sb == nil {
		sb = new(sentBlock)
	}
	shards, k, err := encodeBlockTo(sb.shards, payload)
	s.open = payload[:0] // the signature or MACs may have grown it
	if err != nil {
		// The old block's shards may be half overwritten: repairing it
		// would seal other bytes under its shards' nonces (seal.go).
		s.blocks[(s.block+1)%sentBlocks] = nil
		s.host.log.Error("cannot encode block", "room", s.ref, "err", err)
		return
	}
	s.block++
	*sb = sentBlock{no: s.block, k: k, shards: shards}
	// A lone line is a quiet room's (at 100 lines a second each line is
	// its own block): what a member misses costs its reader a repair's
	// round trip. Anything more is a busy room's block.
	members, mean := s.multicastLossLocked()
	switch {
	case members == 0:
		sb.sent = k
	case recs == 1 && k <= 2:
		sb.sent = k + loneLineParity(k, s.loss)
	default:
		sb.sent = k + proactiveParity(k, members, mean)
	}
	// Repairs send the parity not sent yet, then more (moreShardsLocked).
	sb.next = sb.sent
	s.blocks[sb.no%sentBlocks] = sb
	st := s.host.cfg.Stats
	for i := range sb.sent {
		n := int64(s.sendShardLocked(sb, i, false))
		if i < k {
			st.DataBytesSent.Add(n)
		} else {
			st.ParityBytesSent.Add(n)
		}
	}
}

// multicastLossLocked counts the members that multicast reaches (those
// not on the stream) and averages the loss those that reported one last
// reported. A busy block's parity is sized for the unluckiest of them at
// that loss; the worst loss any member reported lately (s.loss) would
// count the bad luck twice: once in which member reported it, once in the
// model of the unluckiest member.
func (s *Sequencer) multicastLossLocked() (members int, mean float64) {
	var sum float64
	reported := 0
	for _, m := range s.members {
		if !m.streaming {
			members++
			if m.reported {
				reported++
				sum += m.loss
			}
		}
	}
	if reported == 0 {
		return members, 0
	}
	return members, sum / float64(reported)
}

// answerLocked tells the senders of the batch just logged where their
// lines went.
func (s *Sequencer) answerLocked() {
	for _, a := range s.unanswered {
		a.m.send(a.said)
	}
	clear(s.unanswered)
	s.unanswered = s.unanswered[:0]
	if s.logged != nil {
		close(s.logged)
		s.logged = nil
	}
}

// sendShardLocked seals shard i of sb and queues it, a repair ahead of
// the blocks waiting; it returns the bytes queued, 0 if it queued nothing.
func (s *Sequencer) sendShardLocked(sb *sentBlock, i int, repair bool) int {
	s.counter++
	pkt, err := sealShard(s.packetBufLocked(), &s.nonce, s.key, wire.TagOf(s.id), wire.ShardInfo{
		Block: sb.no, Index: uint8(i), K: uint8(sb.k), Sent: uint8(sb.sent),
	}, sb.shards[i])
	if err != nil {
		s.host.log.Error("cannot seal shard", "room", s.ref, "err", err)
		return 0
	}
	if repair {
		// Counted by the repair round (sb.repaired), not as unsent.
		return s.queueFirstLocked(pkt, nil)
	}
	return s.queueLocked(pkt, sb)
}

// tick sends a heartbeat when the room has been silent for a Heartbeat,
// lets the loss estimate decay, and lets a quiet room's sent blocks go.
func (s *Sequencer) tick(now time.Time) {
	s.mu.Lock()
	defer s.unlock()
	s.loss *= lossDecay
	if s.closed {
		return
	}
	// A room without members rekeys too, by count: its block numbers
	// and heartbeat counters must not wrap.
	if s.counter > rekeyPackets || len(s.members) > 0 && now.Sub(s.rotatedAt) > rekeyAge {
		s.rotateLocked()
	}
	if now.Sub(s.lastFlush) > quietBlocks && s.blocks[s.block%sentBlocks] != nil {
		clear(s.blocks[:])
		s.store.Release()
	}
	if s.sayWaiting > 0 {
		// A member whose acks stopped no longer holds says back.
		s.drained.Broadcast()
	}
	if now.Sub(s.lastSend) < Heartbeat {
		return
	}
	// A quiet room lets its last burst's packet buffers go (up to
	// freePackets of them, 110 KiB a room: a host of 10 rooms was over its
	// 16 MB with them), keeping the one its heartbeat goes back in.
	clear(s.free)
	s.free = s.free[:0]
	// Its link's queues have drained; a pace timed by a chunk that a
	// stalled CPU wrote slowly fades, a second at a time, as no full
	// chunk comes to correct it.
	s.pace /= 2
	s.counter++
	pkt, err := sealHeartbeat(s.packetBufLocked(), &s.nonce, s.key, wire.TagOf(s.id), s.counter, wire.Heartbeat{Next: s.next - uint64(len(s.pending)+s.openRecs), LastBlock: s.block})
	if err != nil {
		s.host.log.Warn("heartbeat", "room", s.ref, "err", err)
		return
	}
	s.host.cfg.Stats.HeartbeatBytesSent.Add(int64(s.queueLocked(pkt, nil)))
}

// HandleNack takes a member's multicast NACK: the blocks it asks about
// are repaired once the repair window closes, with fresh shards, as many
// as the neediest member asked for. NACKs from non-members, replayed ones,
// and those beyond a member's rate are dropped and counted.
func (s *Sequencer) HandleNack(pkt []byte) {
	st := s.host.cfg.Stats
	h, err := wire.ParseNackHeader(pkt)
	if err != nil {
		st.NackMalformed.Add(1)
		return
	}
	s.mu.Lock()
	defer s.unlock()
	if h.Epoch != s.key.wireEpoch() {
		st.DataBadEpoch.Add(1)
		return
	}
	var n wire.Nack
	switch err := openNack(s.buf, s.key, h, pkt, &n); {
	case errors.Is(err, errAuth):
		st.DataAuthFailed.Add(1)
		return
	case err != nil:
		st.NackMalformed.Add(1)
		return
	}
	m := s.members[n.KeyID]
	if m == nil {
		st.NackRefused.Add(1)
		return
	}
	// Replays are dropped before the rate limit, so that a copy of a
	// member's NACK, which anyone on the link can send, does not use up the
	// budget the member's own NACKs need.
	if n.Session != m.nackSession || !m.nackSeen.accept(n.Counter) {
		st.NackReplayed.Add(1)
		return
	}
	if !m.nackLimit.allow(time.Now()) {
		st.NackLimited.Add(1)
		return
	}
	st.NacksReceived.Add(1)
	asked := false
	for _, e := range n.Entries {
		sb := s.blocks[e.Block%sentBlocks]
		if sb == nil || sb.no != e.Block {
			continue
		}
		want := int(e.Missing)
		if e.Missing == wire.MissingAll {
			want = sb.k
		}
		sb.asked = max(sb.asked, min(want, sb.k))
		asked = true
	}
	if asked && s.repairTmr == nil {
		s.repairTmr = time.AfterFunc(repairWindow, s.repair)
	}
}

// repair sends what the NACKs of the last window asked for, less what
// is on its way: the block's shards still queued, and what its repair
// round sent (repairDelayLocked). It sends parity not yet sent, then,
// once a block's parity is spent, its data shards again.
func (s *Sequencer) repair() {
	s.mu.Lock()
	defer s.unlock()
	s.repairTmr = nil
	if s.closed {
		return
	}
	now := s.now()
	_, loss := s.multicastLossLocked()
	for _, sb := range s.blocks {
		if sb == nil || sb.asked == 0 {
			continue
		}
		want := sb.asked
		sb.asked = 0
		age := now.Sub(sb.repairedAt)
		if age >= sb.hold {
			sb.repaired, sb.repairedAt, age = 0, now, 0
		}
		// Shards of the block still in the outbox are on their way: a
		// NACK sent while a block is queued behind others (or behind
		// the says of a full link) asks for them too early.
		want = repairShards(max(want-sb.unsent, 0), wire.MaxShards, loss) - sb.repaired
		if want <= 0 {
			continue
		}
		sb.repaired += want
		for range want {
			if sb.next == len(sb.shards) {
				s.moreShardsLocked(sb)
			}
			n := s.sendShardLocked(sb, sb.next, true)
			sb.next++
			s.host.cfg.Stats.RepairsSent.Add(1)
			s.host.cfg.Stats.RepairBytesSent.Add(int64(n))
		}
		sb.hold = age + s.repairDelayLocked()
	}
}

// repairDelayLocked is how long the repairs at the front of the outbox
// take to reach members: what the link must carry before the last of
// them (the repairs, a chunk being written, the packets the socket and
// the interface hold) at the pace packets have been written lately, or
// repairHold on a link that keeps up. At 1 Mbit/s a packet takes 11 ms,
// a repair waited 200 to 400 ms behind the others, and members, asking
// again every nackRetry, drew a fresh repair of the same shards three or
// four times over (BENCHMARKS.md, "Slow links: session 8"). NORM's sender
// likewise holds off repairing content again for a round trip, one that
// counts its queues.
func (s *Sequencer) repairDelayLocked() time.Duration {
	ahead := s.first + sendQueued
	if s.draining {
		ahead += drainChunk
	}
	return max(repairHold, time.Duration(ahead)*s.pace)
}

// moreShardsLocked gives a repair more shards to send once it has sent
// all sb has: fresh parity, up to wire.MaxShards shards in all; past that,
// the data shards again, from the first.
func (s *Sequencer) moreShardsLocked(sb *sentBlock) {
	if len(sb.shards) < wire.MaxShards {
		shards, err := extendBlock(sb.shards, sb.k)
		if err == nil {
			sb.shards = shards
			return
		}
		s.host.log.Error("cannot extend a block's parity; its repairs send data shards again", "room", s.ref, "block", sb.no, "err", err)
	}
	sb.next = 0
}

func (s *Sequencer) announcement(addrs []netip.AddrPort) ([]byte, error) {
	s.mu.Lock()
	if !slices.Equal(addrs, s.lastAddr) {
		// A changed announcement must carry a higher T than any before it.
		s.serial++
		s.lastAddr = slices.Clone(addrs)
	}
	a := wire.Announce{
		Serial:   s.serial,
		Lifetime: uint16(time.Duration(s.host.lifetime.Load()) / time.Second),
		Group:    s.group,
		Room:     s.name,
		Addrs:    addrs,
		Access:   uint8(s.access.mode),
	}
	s.unlock()
	return SignAnnounce(s.host.cfg.Identity, &a)
}

// MemberState is one participant as the host sees it.
type MemberState struct {
	wire.MemberInfo
	Host  bool
	Path  string // "multicast" or "tcp"; "" for the host
	Acked uint64 // everything up to here has reached the member
	Muted bool   // the host refuses the member's lines
}

// Members returns the room's participants, the host first.
func (s *Sequencer) Members() []MemberState {
	s.mu.Lock()
	defer s.unlock()
	out := make([]MemberState, 0, 1+len(s.members))
	out = append(out, MemberState{MemberInfo: wire.MemberInfo{KeyID: s.keyID, Nick: s.host.Nick()}, Host: true, Acked: s.next - 1})
	for _, m := range s.members {
		path := PathMulticast
		if m.streaming {
			path = PathTCP
		}
		out = append(out, MemberState{MemberInfo: wire.MemberInfo{KeyID: m.keyID, Nick: m.nick}, Path: path, Acked: m.acked, Muted: s.muted[m.keyID]})
	}
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	rest := out[1:]
	sort.Slice(rest, func(i, j int) bool { return rest[i].Nick < rest[j].Nick })
	return out
}

func (s *Sequencer) memberInfosLocked() []wire.MemberInfo {
	out := []wire.MemberInfo{{KeyID: s.keyID, Nick: s.host.Nick()}}
	for _, m := range s.members {
		out = append(out, wire.MemberInfo{KeyID: m.keyID, Nick: m.nick})
	}
	return out
}

// Receipt counts the members that hold seq, the host included, of all.
func (s *Sequencer) Receipt(seq uint64) (seen, of int) {
	s.mu.Lock()
	defer s.unlock()
	return s.receiptLocked(seq)
}

func (s *Sequencer) receiptLocked(seq uint64) (seen, of int) {
	seen = 1
	for _, m := range s.members {
		if m.acked >= seq {
			seen++
		}
	}
	return seen, 1 + len(s.members)
}

// admit welcomes a member that the room's access admits with cred on a
// session whose channel binding is binding, sequences its join and
// queues, over its session, everything from where it asked to resume.
func (s *Sequencer) admit(m *hostSession, resume uint64, cred, binding []byte) error {
	if err := ValidateNick(m.nick); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.unlock()
	if len(s.members) >= wire.MaxMembers-1 {
		return fmt.Errorf("room %s is full (%d members)", s.ref, len(s.members)+1)
	}
	if m.keyID == s.keyID {
		return errors.New("the host cannot join its own room")
	}
	if until, ok := s.banned[m.keyID]; ok {
		if until.IsZero() || time.Now().Before(until) {
			return fmt.Errorf("you were removed from room %s by its host", s.ref)
		}
		delete(s.banned, m.keyID)
	}
	redeem, err := s.access.check(s.ref, m.pub, cred, binding, time.Now())
	if err != nil {
		s.host.cfg.Stats.AccessDenied.Add(1)
		return err
	}
	if old, ok := s.members[m.keyID]; ok {
		// The same key joining again is a member that restarted before
		// its old session timed out: the new session replaces it.
		s.dropLocked(old)
	}
	if m.nick == s.host.Nick() {
		return fmt.Errorf("nick %q is already used in room %s; join with another nick", m.nick, s.ref)
	}
	for _, o := range s.members {
		if o.nick == m.nick {
			return fmt.Errorf("nick %q is already used in room %s; join with another nick", m.nick, s.ref)
		}
	}
	start := s.next
	if resume > 0 && resume < s.next {
		start = resume
	}
	slot, macKey, err := s.slotLocked(m)
	if err != nil {
		return err
	}
	w := &wire.Welcome{
		Room:    s.id,
		Epoch:   s.key.epoch,
		Key:     s.key.key,
		Next:    start,
		Block:   s.block,
		Session: m.nackSession,
		Group:   s.group,
		MACSlot: slot,
		MACKey:  macKey,
		Members: s.memberInfosLocked(),
	}
	if !m.send(w) {
		s.unslotLocked(m)
		return errors.New("member too slow")
	}
	s.members[m.keyID] = m
	m.acked, m.ackedAt = start-1, s.now()
	if _, err := s.submitLocked(wire.Record{Kind: wire.KindJoin, KeyID: m.keyID, Nick: m.nick}); err != nil {
		delete(s.members, m.keyID)
		s.unslotLocked(m)
		return err
	}
	if redeem != nil {
		s.access.redeem(*redeem, m.pub)
		if err := s.saveAccessLocked(); err != nil {
			s.host.log.Warn("cannot save the room's allowlist; the member needs its invite again after a restart", "room", s.ref, "err", err)
		}
		s.host.log.Info("invite redeemed", "room", s.ref, "nick", m.nick, "member", m.fp)
	}
	// The resumed history and the join travel over the session: the
	// member joins the data group only now, and its first lines must not
	// depend on how fast that happens.
	s.flushLocked()
	m.catchUp(start, s.next)
	return nil
}

// part sequences a member's departure, unless a newer session of the same
// key replaced it.
func (s *Sequencer) part(m *hostSession) {
	s.mu.Lock()
	defer s.unlock()
	if s.members[m.keyID] != m {
		return
	}
	s.dropLocked(m)
	s.rotateLocked()
}

func (s *Sequencer) dropLocked(m *hostSession) {
	delete(s.members, m.keyID)
	s.unslotLocked(m)
	m.close()
	if _, err := s.submitLocked(wire.Record{Kind: wire.KindPart, KeyID: m.keyID, Nick: m.nick}); err != nil {
		s.host.log.Warn("cannot sequence part", "room", s.ref, "err", err)
	}
}

// logFrames appends to buf the frames that carry records from next up to
// end-1 from the log, about catchUpChunk bytes of them, and returns where
// it stopped. What the log does not hold (aged out, lost in a reboot, or
// never logged because the log failed) is declared Gone, so that the
// member tells its user rather than asking for it forever. It needs no
// lock: the store is safe for concurrent use and the hole never changes.
func (s *Sequencer) logFrames(buf []byte, next, end uint64) ([]byte, uint64) {
	gone := func(to uint64) {
		buf, _ = wire.AppendFrame(buf, &wire.Gone{From: next, To: to})
		next = to
	}
	if next >= s.holeFrom && next < s.holeTo {
		gone(min(s.holeTo, end))
	}
	full := false
	s.store.Read(next, func(first uint64, count int, batch []byte) bool {
		if next >= end {
			return false
		}
		if len(buf) >= catchUpChunk {
			full = true
			return false
		}
		if first > next {
			gone(min(first, end))
			if next >= end {
				return false
			}
		}
		buf, _ = wire.AppendFrame(buf, &wire.BatchFrame{Batch: batch})
		next = first + uint64(count)
		return true
	})
	if !full && next < end {
		// The log holds nothing from next on: trimmed meanwhile, or the
		// records never reached it.
		if o := s.store.Oldest(); o > next {
			gone(min(o, end))
		} else {
			gone(end)
		}
	}
	return buf, next
}

// serveFrame reads a member's next frame into buf and answers it.
func (s *Sequencer) serveFrame(m *hostSession, buf []byte) ([]byte, error) {
	f, buf, err := wire.ReadFrame(m.conn, buf)
	if err != nil {
		return buf, err
	}
	switch f := f.(type) {
	case *wire.Say:
		s.memberSay(m, f)
	case *wire.Fetch:
		s.mu.Lock()
		s.flushLocked()
		end := f.From + uint64(f.Count)
		if end < f.From {
			end = s.next
		}
		m.catchUp(f.From, min(end, s.next))
		s.unlock()
	case *wire.Ack:
		s.ack(m, f)
	case *wire.Stream:
		s.stream(m, f)
	default:
		return buf, fmt.Errorf("unexpected frame %T from member", f)
	}
	return buf, nil
}

// memberSay sequences a member's line; its Said goes out once the line's
// batch is logged, or at once with the reason it was refused.
func (s *Sequencer) memberSay(m *hostSession, f *wire.Say) {
	if err := ValidateText(f.Text); err != nil {
		m.send(&wire.Said{ID: f.ID, Error: err.Error()})
		return
	}
	s.mu.Lock()
	defer s.unlock()
	s.waitOutboxLocked()
	refuse := func(err error) { m.send(&wire.Said{ID: f.ID, Error: err.Error()}) }
	if s.members[m.keyID] != m {
		refuse(errors.New("not a member of the room"))
		return
	}
	if s.muted[m.keyID] {
		s.host.cfg.Stats.SaysMuted.Add(1)
		refuse(fmt.Errorf("the host of room %s has muted you: your lines are not sent, though you still receive the room", s.ref))
		return
	}
	if rate := s.host.cfg.MemberRate; rate > 0 && !m.sayLimit.allow(time.Now()) {
		s.host.cfg.Stats.SaysLimited.Add(1)
		refuse(fmt.Errorf("you are saying more than room %s allows (%g lines a second); wait a moment and say it again", s.ref, rate))
		return
	}
	seq, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: m.keyID, Nick: m.nick, Text: f.Text})
	if err != nil {
		refuse(err)
		return
	}
	m.watches = addWatch(m.watches, seq)
	said := &wire.Said{ID: f.ID, Seq: seq}
	if len(s.pending) == 0 {
		// The line filled its batch, which is logged already.
		m.send(said)
		return
	}
	s.unanswered = append(s.unanswered, answer{m: m, said: said})
}

// ack records how far a member has got, and the loss it sees; the
// members whose lines it now holds hear their new receipt counts.
//
// The host answers acks with its own, carrying the newest sequence number
// logged: it keeps an idle session alive for the member's idle timer, and
// tells a member that multicast does not reach where the stream ends. It
// answers at most one ack per ackAnswerEvery: a busy member acks every
// few lines, and answering each doubled the session traffic for nothing
// (the member's once-a-second ack still gets its answer).
func (s *Sequencer) ack(m *hostSession, a *wire.Ack) {
	s.mu.Lock()
	defer s.unlock()
	if now := s.now(); now.Sub(m.answered) >= ackAnswerEvery {
		m.answered = now
		m.send(&wire.Ack{Seq: s.next - uint64(len(s.pending)) - 1})
	}
	// Every member's report counts for the stream decision (a streaming
	// member stays in the data group and keeps measuring); only those on
	// multicast size parity.
	m.loss, m.reported = float64(min(a.Loss, 1000))/1000, true
	if !m.streaming {
		s.loss = max(s.loss, m.loss)
	}
	if s.members[m.keyID] != m || a.Seq <= m.acked {
		return
	}
	m.acked, m.ackedAt = min(a.Seq, s.next-1), s.now()
	s.drained.Broadcast() // a say may be waiting for this member
	for _, o := range s.members {
		o.watches = s.updateWatchesLocked(o.watches, func(seq uint64, seen, of int) {
			o.send(&wire.Seen{Seq: seq, Seen: uint16(seen), Of: uint16(of)})
		})
	}
	if report := s.host.cfg.OnReceipt; report != nil {
		s.watches = s.updateWatchesLocked(s.watches, func(seq uint64, seen, of int) { report(s.ref, seq, seen, of) })
	}
}

// stream switches a member between multicast and its session: a member
// that is granted the stream gets everything it lacks at once, then every
// batch as it is made. Every request to start is answered, granted or
// refused (wire.Stream); stopping needs no answer.
func (s *Sequencer) stream(m *hostSession, f *wire.Stream) {
	s.mu.Lock()
	defer s.unlock()
	if s.members[m.keyID] != m {
		return
	}
	if !f.On {
		if m.streaming {
			m.streaming = false
			s.host.log.Info("member changed path", "room", s.ref, "nick", m.nick, "tcp", false)
		}
		return
	}
	if !m.streaming && f.Lossy {
		if room, peers, shared := s.sharedLossLocked(m); shared {
			s.host.log.Info("stream refused: the room shares the member's loss", "room", s.ref, "nick", m.nick,
				"loss", m.loss, "room_loss", room, "members", peers)
			m.send(&wire.Stream{On: false})
			return
		}
	}
	m.send(&wire.Stream{On: true})
	if m.streaming {
		return
	}
	m.streaming = true
	s.host.log.Info("member changed path", "room", s.ref, "nick", m.nick, "tcp", true)
	// What is logged first, then the pending batch, which flushing adds to
	// the session right after it.
	m.catchUp(m.acked+1, s.next-uint64(len(s.pending)))
	s.flushLocked()
}

// outlierMargin is how much more loss than the room's a member must
// report to be granted the stream for loss.
const outlierMargin = 0.25

// sharedLossLocked tells whether the loss member m reports is the room's:
// whether the median of what the other members last reported (room, from
// peers reports) comes within outlierMargin of it. A member asks for the
// stream when its loss passes lossyAbove; if most members lose about as
// much, the loss is on the host's side, most likely its own link
// overrun, and answering with a copy of the room per member over that same
// link is a congestion collapse: the session streams crowd out multicast,
// so the rest lose more and ask too. Those members stay on multicast,
// where NACK repairs and Fetch over the session still bring every
// record; only a member whose own link is worse than the room's is worth
// a copy of its own. With no other member to compare with, the stream is
// granted: one copy costs no more than the multicast it replaces.
func (s *Sequencer) sharedLossLocked(m *hostSession) (room float64, peers int, shared bool) {
	// Sorted as their bits: losses are not negative, and such floats
	// order as their IEEE 754 bits do. A sort of uint64s is in the
	// binary already (roomlog); one of float64s was 9 KB of a router's.
	var losses []uint64
	for _, o := range s.members {
		if o != m && o.reported {
			losses = append(losses, math.Float64bits(o.loss))
		}
	}
	if len(losses) == 0 {
		return 0, 0, false
	}
	slices.Sort(losses)
	room = math.Float64frombits(losses[len(losses)/2])
	return room, len(losses), m.loss-room < outlierMargin
}

func (s *Sequencer) close() {
	s.mu.Lock()
	defer s.unlock()
	if s.closed {
		return
	}
	s.flushLocked()
	s.sendBlockLocked()
	s.closed = true
	s.drained.Broadcast()
	if s.repairTmr != nil {
		s.repairTmr.Stop()
	}
	if err := s.store.Close(); err != nil {
		s.host.log.Warn("closing room store", "room", s.ref, "err", err)
	}
}
