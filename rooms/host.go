package rooms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"meshd/rooms/poller"
	"meshd/rooms/secure"
	"meshd/rooms/wire"
)

// PacketSender sends one datagram. *mcast.Conn satisfies it, and so does
// the in-memory mcast/memnet.Conn that tests use.
type PacketSender interface {
	WriteTo(b []byte, dst netip.AddrPort) error
}

// Delivery is one record delivered, in sequence order, to this daemon's
// user, whether it hosts the room or is a member.
type Delivery struct {
	Room string // name@fingerprint
	Seq  uint64
	wire.Record
}

// HostConfig is what a Host needs from the daemon.
type HostConfig struct {
	Identity   *Identity
	Boot       uint32 // persisted boot counter: the high half of epochs and serials
	Sender     PacketSender
	DataGroups netip.Prefix // data groups are drawn from here
	DataPort   uint16
	Nick       string                  // the hosting user's nick in every room
	Lifetime   time.Duration           // how long an announcement keeps a room listed
	Addrs      func() []netip.AddrPort // join addresses S to announce
	Deliver    func(Delivery)          // must not block
	// OnReceipt hears how many members hold a line the hosting user
	// said, as acks arrive; must not block.
	OnReceipt func(ref string, seq uint64, seen, of int)
	Stats     *Stats
	Logger    *slog.Logger
	// MemberRate bounds the lines a second each member may say (with
	// bursts of twice that); 0 means no bound. The hosting user is not
	// bounded.
	MemberRate float64
	// OpenStore gives a room the store that keeps its sequence across
	// restarts.
	OpenStore func(name string, id [wire.RoomIDLen]byte) (Store, error)
}

// Store keeps a hosted room's sequence across restarts: the log of its
// signed batches, and a persistent reservation of sequence numbers, so
// that none is ever assigned twice, even after a crash that lost the log.
// It must be safe for concurrent use: sessions read it while the room
// appends.
type Store interface {
	// Append adds a batch holding first..first+count-1.
	Append(first uint64, count int, batch []byte) error
	// Read yields the batches holding any sequence number >= from,
	// oldest first, until yield returns false; yield may keep batch.
	Read(from uint64, yield func(first uint64, count int, batch []byte) bool)
	// Oldest returns the lowest sequence number held, 0 if none.
	Oldest() uint64
	// Next returns one past the newest sequence number held, 0 if none.
	Next() uint64
	// Release lets go of memory held for appends to come (a buffer's
	// spare room): the room has been quiet for a while.
	Release()
	// Start returns the first sequence number to assign: after the log,
	// or after the reservation if the log did not survive.
	Start() uint64
	// Reserve records, durably, that numbers below hw may be assigned.
	Reserve(hw uint64) error
	// LoadAccess returns what SaveAccess saved last, nil if nothing.
	LoadAccess() ([]byte, error)
	// SaveAccess replaces, durably and atomically, the room's invites
	// and the keys they admitted. It is called at each invite issued or
	// redeemed and at each kick.
	SaveAccess(b []byte) error
	Close() error
}

// Heartbeat is how long a room may be silent before its host says where
// the sequence stands, so members notice a lost tail.
const Heartbeat = time.Second

const (
	handshakeTimeout = 10 * time.Second
	writeTimeout     = 10 * time.Second
	// sessionQueueBytes bounds the frames queued to one member (welcome,
	// answers, receipts, keys): a member that lets this much pile up is
	// stuck, and its session is ended. Records do not count: a session
	// reads them from the room's log as it writes (catchUp).
	sessionQueueBytes = 1 << 20
	// catchUpChunk is about how many bytes of records a session writes
	// between looks at its queue, so that answers are not held up behind
	// a long catch-up.
	catchUpChunk = 64 << 10
	// inFlight is how long after writing records a session assumes the
	// member has yet to read them: a Fetch for them within it is answered
	// by what is already on its way.
	inFlight = time.Second
)

// Host is the set of rooms this daemon hosts, and the server that members
// join them through. Safe for concurrent use.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	joins *sourceLimiter
	// The running nick and announcement lifetime, which a reload of the
	// configuration changes (cfg holds the start-up values).
	nick     atomic.Pointer[string]
	lifetime atomic.Int64

	mu    sync.Mutex
	rooms map[string]*Sequencer
}

// NewHost returns a Host with no rooms.
func NewHost(cfg HostConfig) *Host {
	h := &Host{
		cfg:   cfg,
		log:   cfg.Logger,
		joins: newSourceLimiter(joinRate, joinBurst, joinSources),
		rooms: make(map[string]*Sequencer),
	}
	h.SetNick(cfg.Nick)
	h.SetLifetime(cfg.Lifetime)
	return h
}

// SetNick changes the hosting user's nick in every hosted room: its lines
// carry the new nick from now on, and members that join afterwards see it
// in the member list. Members already in a room see it on their user's
// lines; their lists keep the old one until they rejoin.
func (h *Host) SetNick(nick string) { h.nick.Store(&nick) }

// Nick returns the hosting user's nick.
func (h *Host) Nick() string { return *h.nick.Load() }

// SetLifetime changes how long announcements keep the hosted rooms
// listed, from the next announcement on.
func (h *Host) SetLifetime(d time.Duration) { h.lifetime.Store(int64(d)) }

// ErrAlreadyHosted means the daemon already hosts a room of that name.
var ErrAlreadyHosted = errors.New("already hosted")

// Open starts hosting room name, admitting whom access says, and
// continuing its sequence if its store holds one.
func (h *Host) Open(name string, access RoomAccess) (*Sequencer, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := access.Validate(); err != nil {
		return nil, fmt.Errorf("room %s: %w", name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.rooms[name]; ok {
		return s, fmt.Errorf("room %s: %w", s.ref, ErrAlreadyHosted)
	}
	id := RoomID(h.cfg.Identity.Pub, name)
	store, err := h.cfg.OpenStore(name, id)
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", name, err)
	}
	s, err := h.newRoom(name, id, store, access)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("room %s: %w", name, err)
	}
	h.rooms[name] = s
	h.log.Info("hosting room", "room", s.ref, "group", s.group, "next", s.next, "access", access.Mode)
	return s, nil
}

// newRoom sets up a room on its open store: its access, with the invites
// the store kept, and its first epoch key.
func (h *Host) newRoom(name string, id [wire.RoomIDLen]byte, store Store, access RoomAccess) (*Sequencer, error) {
	stored, err := store.LoadAccess()
	if err != nil {
		return nil, err
	}
	acc, err := newAccessState(h.cfg.Identity.Pub, name, access, stored)
	if err != nil {
		return nil, err
	}
	s := newSequencer(h, name, id, store, acc)
	if err := s.rekeyLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops every room's timers and closes their stores.
func (h *Host) Close() {
	for _, s := range h.Rooms() {
		s.close()
	}
}

// Room returns the hosted room called name, or nil.
func (h *Host) Room(name string) *Sequencer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[name]
}

// Rooms returns the hosted rooms, sorted by name.
func (h *Host) Rooms() []*Sequencer {
	h.mu.Lock()
	out := make([]*Sequencer, 0, len(h.rooms))
	for _, s := range h.rooms {
		out = append(out, s)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b *Sequencer) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

// Announcements returns a signed announcement for every hosted room.
func (h *Host) Announcements() [][]byte {
	rooms := h.Rooms()
	if len(rooms) == 0 {
		// The addresses come from a netlink dump: a dozen system calls,
		// each waking the runtime's monitor thread, every announce
		// interval of a daemon that hosts nothing.
		return nil
	}
	addrs := h.cfg.Addrs()
	if len(addrs) > wire.MaxAddrs {
		addrs = addrs[:wire.MaxAddrs]
	}
	var out [][]byte
	for _, s := range rooms {
		pkt, err := s.announcement(addrs)
		if err != nil {
			h.log.Warn("cannot announce room", "room", s.ref, "err", err)
			continue
		}
		out = append(out, pkt)
	}
	return out
}

// Tick sends a heartbeat for every room that has been silent for a
// Heartbeat, and lets each room's loss estimate decay. The daemon calls it
// four times a second.
func (h *Host) Tick(now time.Time) {
	for _, s := range h.Rooms() {
		s.tick(now)
	}
}

// Serve accepts joins on ln until ctx ends, then closes every session it
// admitted and returns once their goroutines have finished.
//
// An admitted member's session has no goroutine of its own while it is
// idle, which most of a busy host's hundreds are between their members'
// acks: it waits in the poller, and a goroutine reads it only while it
// has input (hostSession.serve). Serve counts each session from its
// admission until it has left, and the goroutines a session starts (its
// reader, its writer) are its own, waited for before it leaves.
func (h *Host) Serve(ctx context.Context, ln net.Listener) error {
	p, err := poller.New()
	if err != nil {
		return fmt.Errorf("join server: %w", err)
	}
	defer p.Close()
	srv := &joinServer{p: p}
	ctx, cancel := context.WithCancel(ctx)
	defer srv.wg.Wait()
	defer cancel()
	// Once ctx is done, however Serve returns, the listener and this
	// server's sessions are closed and their readers woken: here rather
	// than by a context.AfterFunc each (a couple of hundred bytes and an
	// entry in ctx's children per session); a join admitted after this
	// sees ctx done and closes its own (join).
	context.AfterFunc(ctx, func() {
		ln.Close()
		for _, s := range h.Rooms() {
			s.closeSessions(srv)
		}
	})
	failed := make(chan error, 1)
	srv.wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			failed <- err
			cancel()
		}
	})
	srv.wg.Go(func() { h.expireIdle(ctx) })
	stopped := func() error {
		select {
		case err := <-failed:
			return fmt.Errorf("join server: %w", err)
		default:
			return nil
		}
	}
	joining := make(chan struct{}, maxJoining)
	for {
		// A slot first: a connection beyond them waits in the listen
		// backlog, not as a goroutine.
		select {
		case joining <- struct{}{}:
		case <-ctx.Done():
			return stopped()
		}
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return stopped()
			}
			return fmt.Errorf("accept joins: %w", err)
		}
		var src netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			src = ap.Addr().Unmap()
		}
		if src.IsValid() && (!h.joins.allow(src, time.Now()) || !srv.enter(src)) {
			h.cfg.Stats.JoinsLimited.Add(1)
			c.Close()
			<-joining
			continue
		}
		srv.wg.Go(func() {
			h.join(ctx, srv, c, func() {
				srv.leave(src)
				<-joining
			})
		})
	}
}

// maxJoining bounds the joins in their handshake, hello and admission at
// once. Each is a goroutine whose stack the handshake grows; a burst of
// 500 at once (TestBenchRSS: members rejoining a restarted host) ran 500
// such stacks, and left the runtime 500 goroutine descriptors it never
// frees and a heap scattered over the burst's pages: 1 MiB of the host's
// RSS after it. Joins beyond the bound wait their turn in the listen
// backlog; a handshake takes a few milliseconds, so that costs a burst
// little. A peer that stalls its handshake holds a slot for at most
// handshakeTimeout, and one address holds at most maxSourceJoining slots
// (and opens joinRate joins a second, sourceLimiter): stalling every slot
// takes four addresses, and delays others' joins while it lasts, where
// unbounded joins let as many addresses exhaust a router's memory.
const (
	maxJoining       = 32
	maxSourceJoining = joinBurst
)

// joinServer is one Serve's: the poller its sessions park in, and the
// count of its joins, sessions (each until it has left) and other
// goroutines.
type joinServer struct {
	p  *poller.Poller
	wg sync.WaitGroup

	mu      sync.Mutex
	joining map[netip.Addr]int // joins in progress by source, none at 0
}

// enter counts a join from src in progress, unless maxSourceJoining from
// it are already: a peer that stalls its handshakes cannot take every
// slot from one address (the rate of its joins alone lets it hold 60).
func (srv *joinServer) enter(src netip.Addr) bool {
	srv.mu.Lock()
	ok := srv.joining[src] < maxSourceJoining
	if ok {
		if srv.joining == nil {
			srv.joining = make(map[netip.Addr]int)
		}
		srv.joining[src]++
	}
	srv.mu.Unlock()
	return ok
}

// leave ends what enter counted; an invalid src was not counted.
func (srv *joinServer) leave(src netip.Addr) {
	if !src.IsValid() {
		return
	}
	srv.mu.Lock()
	if srv.joining[src]--; srv.joining[src] <= 0 {
		delete(srv.joining, src)
	}
	srv.mu.Unlock()
}

// join takes a member through the handshake and its hello into the room,
// then reads what the member sent after its hello and parks the session
// in srv's poller (serve).
//
// done frees the join's slot (maxJoining) once the member is admitted or
// refused: not when the session's first reader, which this goroutine
// becomes, ends, since a member that keeps sending keeps it.
func (h *Host) join(ctx context.Context, srv *joinServer, raw net.Conn, done func()) {
	freed := false
	defer func() {
		if !freed {
			done()
		}
	}()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	handed := false
	defer func() {
		if !handed {
			stop()
			raw.Close()
		}
	}()
	log := h.log.With("peer", raw.RemoteAddr().String())

	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, err := secure.Server(ctx, raw, secure.Config{Static: h.cfg.Identity.static, Tampered: h.cfg.Stats.tampered})
	if err != nil {
		h.cfg.Stats.SessionsRefused.Add(1)
		log.Debug("join handshake failed", "err", err)
		return
	}
	pub := conn.PeerKey()
	f, _, err := wire.ReadFrame(conn, nil)
	if err != nil {
		h.cfg.Stats.SessionsRefused.Add(1)
		log.Debug("join: no hello", "err", err)
		return
	}
	hello, ok := f.(*wire.Hello)
	if !ok {
		h.cfg.Stats.SessionsRefused.Add(1)
		log.Debug("join: first frame is not a hello", "type", fmt.Sprintf("%T", f))
		return
	}
	conn.SetDeadline(time.Time{})

	s := h.Room(hello.Room)
	if s == nil {
		h.refuse(conn, fmt.Sprintf("this daemon does not host a room called %q", hello.Room))
		return
	}
	sess := &hostSession{
		nackSession: newNackSession(),
		nackLimit:   bucket{rate: nackRate, burst: nackBurst},
		sayLimit:    bucket{rate: h.cfg.MemberRate, burst: 2 * h.cfg.MemberRate},
		conn:        conn,
		pub:         pub,
		keyID:       KeyID(pub),
		fp:          Fingerprint(pub),
		nick:        hello.Nick,
		seq:         s,
		srv:         srv,
	}
	// Heard from now, and registered, before admit makes the session
	// reachable by expireIdle and by whatever closes it (a kick, a rejoin
	// of the same key), so that the close finds its entry.
	sess.touch()
	if err := sess.watch(srv.p, raw); err != nil {
		h.cfg.Stats.SessionsRefused.Add(1)
		log.Warn("join: cannot watch the session", "err", err)
		return
	}
	if err := s.admit(sess, hello.Resume, hello.Cred, conn.ChannelBinding()); err != nil {
		// The writer never started: what admit queued (a Welcome, if the
		// join failed after it) is not sent, the refusal is.
		if sess.entry != nil {
			sess.entry.Remove()
		}
		h.refuse(conn, err.Error())
		return
	}
	log.Info("member joined", "room", s.ref, "nick", sess.nick, "member", sess.fp)
	handed = true
	stop()
	srv.wg.Add(1)
	sess.start()
	if ctx.Err() != nil {
		// Admitted after Serve closed the room's sessions.
		sess.close()
	}
	// The hello's goroutine, its stack grown by the handshake, reads what
	// came with the hello and is gone once the session parks.
	freed = true
	done()
	sess.serve()
}

// expireIdle ends, once a second, the sessions silent for memberIdle: an
// idle session has no read waiting whose deadline could end it.
func (h *Host) expireIdle(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := monotime()
			for _, s := range h.Rooms() {
				s.expireIdle(now)
			}
		}
	}
}

// closeSessions ends the sessions srv admitted, when it stops.
func (s *Sequencer) closeSessions(srv *joinServer) {
	s.mu.Lock()
	defer s.unlock()
	for _, m := range s.members {
		if m.srv == srv {
			m.close()
		}
	}
}

// errSilent ends the session of a member that sent nothing, not even its
// once-a-second ack, for memberIdle.
var errSilent = fmt.Errorf("silent for %v", memberIdle)

// expireIdle ends the sessions of members silent for memberIdle.
func (s *Sequencer) expireIdle(now time.Duration) {
	s.mu.Lock()
	defer s.unlock()
	for _, m := range s.members {
		if now-time.Duration(m.lastRead.Load()) > memberIdle {
			m.silent.Store(true)
			m.close()
		}
	}
}

// started is the origin of monotime.
var started = time.Now()

// monotime is the monotonic time since the process started: a session's
// last read is kept in an atomic integer.
func monotime() time.Duration { return time.Since(started) }

// leave sequences the part of a member whose session ended with err, once
// its writer has finished. It keeps no logger per session: a With logger
// costs each of hundreds of sessions its formatted attributes.
func (s *Sequencer) leave(m *hostSession, err error) {
	if m.silent.Load() {
		err = errSilent
	}
	s.part(m)
	m.close()
	m.writers.Wait()
	if m.entry != nil {
		m.entry.Remove()
	}
	s.host.log.Info("member left", "peer", m.conn.RemoteAddr().String(), "room", s.ref, "nick", m.nick, "member", m.fp, "err", err)
	m.srv.wg.Done()
}

func (h *Host) refuse(conn *secure.Conn, reason string) {
	h.cfg.Stats.SessionsRefused.Add(1)
	b, err := wire.AppendFrame(nil, &wire.Refuse{Reason: reason})
	if err != nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	conn.Write(b)
}

// hostSession is the host's end of one member's session. Its writer
// sends, in order, the frames queued for it (bounded in bytes), then
// records read from the room's log from where the member needs them
// (catchUp). Holding records in the log rather than in the queue means a
// member that falls behind costs the host no memory and is never dropped
// or skipped: it catches up at the speed it reads, and what the log no
// longer holds is declared to it as Gone, so its user is told.
//
// The writer is a goroutine only while there is something to write: it is
// started when a frame or a catch-up is queued and ends once both are
// drained. Its reader (serve) is a goroutine only while the member's
// frames come in: an idle session, most of a busy host's hundreds, is an
// entry in the host's poller, with no goroutine and no buffer.
type hostSession struct {
	// Guarded by the Sequencer's lock.
	acked     uint64    // everything up to here has reached the member
	streaming bool      // the member gets the room over this session
	loss      float64   // the share of multicast shards it lost, as it last reported
	reported  bool      // loss holds a report
	answered  time.Time // when the host last answered an ack
	ackedAt   time.Time // when acked last changed, or the member joined
	watches   []watch
	nackLimit bucket
	nackSeen  nackWindow // the counters of this session's NACKs accepted so far
	sayLimit  bucket

	// nackSession names this session in the member's NACKs (Welcome.Session).
	nackSession uint64
	// mac is the member's slot and key in small blocks' MACs, guarded by
	// the Sequencer's lock; noSlot says it was admitted with none free.
	mac    *blockMAC
	noSlot bool

	seq   *Sequencer
	conn  *secure.Conn // Close does not wait for a stuck write
	pub   ed25519.PublicKey
	keyID [wire.KeyIDLen]byte
	fp    string
	nick  string

	// The reader: entry parks the session in the host's poller while it
	// has no input (nil where the connection has no descriptor: its
	// reader blocks), raw is its descriptor, serveFn is serve, made once
	// for the goroutine each input starts. lastRead is when the reader
	// last read a frame (monotime), silent says that it was too long ago
	// and why the session was closed.
	entry    *poller.Entry
	raw      syscall.RawConn
	serveFn  func()
	lastRead atomic.Int64
	silent   atomic.Bool
	// srv is the server that admitted the session; it counts the session
	// until it has left.
	srv *joinServer

	mu     sync.Mutex
	frames [][]byte // queued frames, oldest first
	queued int      // their bytes
	// Records from..end-1 have been or will be written: next is where the
	// writer is. run counts resets of next, so that a writer's progress on
	// a run that was replaced meanwhile is not recorded.
	from, next, end uint64
	run             uint64
	wroteAt         time.Time // when the writer reached end
	started         bool      // admitted: the writer may run
	writing         bool      // a writer goroutine runs
	closed          bool      // no writer starts any more
	// writers is the writer goroutine, if one runs; the session's reader
	// waits for it once the session is closed.
	writers sync.WaitGroup
}

// nackWindow is a session's replayWindow, made at its first NACK: most
// sessions never send one (members on TCP, members that lose nothing), and
// its 136 bytes were a fifth of an idle session's hostSession. The zero
// value has seen nothing.
type nackWindow struct{ w *replayWindow }

// accept is replayWindow.accept.
func (n *nackWindow) accept(counter uint64) bool {
	if n.w == nil {
		n.w = new(replayWindow)
	}
	return n.w.accept(counter)
}

// send queues a frame and reports whether it was queued. A member with
// sessionQueueBytes queued already is stuck: its session ends.
func (m *hostSession) send(f wire.Frame) bool {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		return false
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	if m.queued+len(b) > sessionQueueBytes {
		m.mu.Unlock()
		m.close()
		return false
	}
	m.frames = append(m.frames, b)
	m.queued += len(b)
	m.writeLocked()
	m.mu.Unlock()
	return true
}

// catchUp has the session write, from the room's log, the records from
// from to end-1 (which must be logged), after what it already has to
// write. What the session has written or is writing is not written
// twice: the member asked before it arrived.
func (m *hostSession) catchUp(from, end uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case from >= end:
		return
	case from == m.end || from >= m.from && from < m.end && (m.next < m.end || time.Since(m.wroteAt) < inFlight):
		// Right after what the session has written or is writing, or
		// within what it is writing or just wrote: TCP delivers that, so
		// only what lies beyond is new.
		m.end = max(m.end, end)
	case from >= m.from && from < m.end:
		// Written a while ago and asked for again: the member lacks it.
		m.next = from
		m.end = max(m.end, end)
		m.run++
	case from > m.end && m.next < m.end:
		// Beyond a run still being written: write on through the records
		// between, which the member has (it drops them as duplicates),
		// rather than keep a list of runs.
		m.end = end
	default:
		m.from, m.next, m.end = from, from, max(end, m.end)
		m.run++
	}
	m.writeLocked()
}

// start lets the writer run, once the member is admitted: a join refused
// after admit queued its Welcome gets the refusal alone.
func (m *hostSession) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started = true
	m.writeLocked()
}

// writeLocked starts the writer if there is something to write and none
// runs. A closed session starts none, so that the reader's wait for the
// writer, after close, cannot race with a start.
func (m *hostSession) writeLocked() {
	if m.writing || !m.started || m.closed || len(m.frames) == 0 && m.next >= m.end {
		return
	}
	m.writing = true
	m.writers.Go(m.write)
}

// close ends the session: its connection is closed, and its reader, if
// the session is parked, is started to find that out and leave.
func (m *hostSession) close() {
	m.mu.Lock()
	closed := m.closed
	m.closed = true
	m.mu.Unlock()
	if !closed {
		m.conn.Close()
		if m.entry != nil {
			m.entry.Wake()
		}
	}
}

// writeBufs lends writers their buffers for as long as they run: idle
// sessions hold none, and the pool lets go of what stays unused for a
// couple of collections.
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// write writes the queued frames, then records from the log a chunk at a
// time, until both are drained or the session ends.
func (m *hostSession) write() {
	bp := writeBufs.Get().(*[]byte)
	defer func() {
		// A buffer grown past a catch-up's chunk is not kept: one
		// whopping frame must not pin its size in the pool.
		if cap(*bp) <= 2*catchUpChunk {
			writeBufs.Put(bp)
		}
	}()
	for {
		m.mu.Lock()
		if m.closed || len(m.frames) == 0 && m.next >= m.end {
			m.writing = false
			m.mu.Unlock()
			return
		}
		frames := m.frames
		m.frames, m.queued = nil, 0
		next, end, run := m.next, m.end, m.run
		m.mu.Unlock()
		buf := (*bp)[:0]
		for _, f := range frames {
			buf = append(buf, f...)
		}
		if len(buf) == 0 {
			buf, next = m.seq.logFrames(buf, next, end)
			m.mu.Lock()
			if m.run == run {
				m.next = max(m.next, next)
				if m.next >= m.end {
					m.wroteAt = time.Now()
				}
			}
			m.mu.Unlock()
		}
		*bp = buf
		m.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := m.conn.Write(buf); err != nil {
			// Closed, no writer starts again: writing stays set.
			m.close()
			return
		}
	}
}

// watch registers the session with p, if its connection raw has a
// descriptor.
func (m *hostSession) watch(p *poller.Poller, raw net.Conn) error {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	m.raw = rc
	m.serveFn = m.serve
	m.entry, err = p.Add(rc, func() { go m.serveFn() })
	return err
}

// frameBufs lends readers the buffer frames are read into, while they
// read: a parked session holds none.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// serve reads the member's frames while it has input, then parks the
// session (or, without a poller entry, blocks reading). The first read
// that fails ends the session: the member left, was silent for too long
// (expireIdle) or was cut off (close).
func (m *hostSession) serve() {
	bp := frameBufs.Get().(*[]byte)
	var err error
	for {
		if m.entry != nil && !m.conn.Buffered() && m.entry.Park() {
			break
		}
		// A frame that has begun must arrive within memberIdle.
		m.conn.SetReadDeadline(time.Now().Add(memberIdle))
		if *bp, err = m.seq.serveFrame(m, *bp); err != nil {
			break
		}
		m.touch()
	}
	// A buffer grown by a large frame is not kept.
	if cap(*bp) <= 4<<10 {
		frameBufs.Put(bp)
	}
	if err != nil {
		m.seq.leave(m, err)
	}
}

// touch records that the member was heard from now.
func (m *hostSession) touch() { m.lastRead.Store(int64(monotime())) }

// watch is a line a member said, whose receipt count the host reports to
// it as members acknowledge it.
type watch struct {
	seq  uint64
	seen int
}
