package rooms

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

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
	Stats      *Stats
	Logger     *slog.Logger
	History    int // packets kept per room for members that missed them
}

// Heartbeat is how long a room may be silent before its host says where
// the sequence stands, so members notice a lost tail.
const Heartbeat = time.Second

const (
	handshakeTimeout = 10 * time.Second
	writeTimeout     = 10 * time.Second
	sessionQueue     = 1024 // frames queued to one member before it counts as stuck
)

// Host is the set of rooms this daemon hosts, and the server that members
// join them through. Safe for concurrent use.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	mu    sync.Mutex
	rooms map[string]*Sequencer
}

// NewHost returns a Host with no rooms.
func NewHost(cfg HostConfig) *Host {
	if cfg.History <= 0 {
		cfg.History = 4096
	}
	return &Host{cfg: cfg, log: cfg.Logger, rooms: make(map[string]*Sequencer)}
}

// ErrAlreadyHosted means the daemon already hosts a room of that name.
var ErrAlreadyHosted = errors.New("already hosted")

// Open starts hosting room name.
func (h *Host) Open(name string) (*Sequencer, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.rooms[name]; ok {
		return s, fmt.Errorf("room %s: %w", s.ref, ErrAlreadyHosted)
	}
	id := RoomID(h.cfg.Identity.Pub, name)
	s := &Sequencer{
		host:    h,
		name:    name,
		ref:     Ref(h.cfg.Identity.Pub, name),
		id:      id,
		keyID:   KeyID(h.cfg.Identity.Pub),
		group:   DataGroup(h.cfg.DataGroups, id, h.cfg.DataPort),
		serial:  Epoch(h.cfg.Boot, 0),
		next:    1,
		hist:    newHistory(h.cfg.History),
		members: make(map[[wire.KeyIDLen]byte]*hostSession),
	}
	if err := s.rekeyLocked(); err != nil {
		return nil, err
	}
	h.rooms[name] = s
	h.log.Info("hosting room", "room", s.ref, "group", s.group)
	return s, nil
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
	addrs := h.cfg.Addrs()
	if len(addrs) > wire.MaxAddrs {
		addrs = addrs[:wire.MaxAddrs]
	}
	var out [][]byte
	for _, s := range h.Rooms() {
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
// Heartbeat.
func (h *Host) Tick(now time.Time) {
	for _, s := range h.Rooms() {
		s.heartbeat(now)
	}
}

// Serve accepts joins on ln until ctx ends, then closes every session and
// returns once their goroutines have finished.
func (h *Host) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept joins: %w", err)
		}
		wg.Go(func() { h.serveSession(ctx, c) })
	}
}

func (h *Host) serveSession(ctx context.Context, raw net.Conn) {
	conn := tls.Server(raw, h.cfg.Identity.serverTLS())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	log := h.log.With("peer", raw.RemoteAddr().String())

	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		h.cfg.Stats.SessionsRefused.Add(1)
		log.Debug("join handshake failed", "err", err)
		return
	}
	pub, _ := peerKey(conn.ConnectionState())
	f, buf, err := wire.ReadFrame(conn, nil)
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
		conn:  conn,
		raw:   raw,
		keyID: KeyID(pub),
		fp:    Fingerprint(pub),
		nick:  hello.Nick,
		out:   make(chan []byte, sessionQueue),
		gone:  make(chan struct{}),
	}
	if err := s.admit(sess, hello.Resume); err != nil {
		h.refuse(conn, err.Error())
		return
	}
	log = log.With("room", s.ref, "nick", sess.nick, "member", sess.fp)
	log.Info("member joined")

	var wg sync.WaitGroup
	wg.Go(func() { sess.writeLoop() })
	err = s.serveMember(sess, buf)
	s.part(sess)
	sess.close()
	wg.Wait()
	log.Info("member left", "err", err)
}

func (h *Host) refuse(conn *tls.Conn, reason string) {
	h.cfg.Stats.SessionsRefused.Add(1)
	b, err := wire.AppendFrame(nil, &wire.Refuse{Reason: reason})
	if err != nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	conn.Write(b)
}

// Sequencer is the host side of one room: the only place its sequence
// numbers are assigned. Safe for concurrent use.
type Sequencer struct {
	host   *Host
	name   string
	ref    string
	id     [wire.RoomIDLen]byte
	keyID  [wire.KeyIDLen]byte
	group  netip.AddrPort
	serial uint64

	mu       sync.Mutex
	key      *epochKey
	rekeys   uint32
	counter  uint64 // packets sealed under key
	next     uint64 // the next sequence number to assign
	lastSend time.Time
	hist     *history
	members  map[[wire.KeyIDLen]byte]*hostSession
	lastAddr []netip.AddrPort
}

// Name returns the room's name.
func (s *Sequencer) Name() string { return s.name }

// Ref returns the room's name@fingerprint.
func (s *Sequencer) Ref() string { return s.ref }

// Group returns the room's data group.
func (s *Sequencer) Group() netip.AddrPort { return s.group }

// ID returns the room id its data packets carry.
func (s *Sequencer) ID() [wire.RoomIDLen]byte { return s.id }

// LastSeq returns the newest sequence number assigned.
func (s *Sequencer) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	return nil
}

// Say sequences a line from the hosting user.
func (s *Sequencer) Say(text string) (uint64, error) {
	if err := ValidateText(text); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: s.host.cfg.Nick, Text: text})
}

// submitLocked gives rec the next sequence number, seals it, multicasts it,
// keeps it for repair and delivers it to the hosting user.
func (s *Sequencer) submitLocked(rec wire.Record) (uint64, error) {
	seq := s.next
	pkt, err := s.sealLocked(seq, []wire.Record{rec})
	if err != nil {
		return 0, err
	}
	s.next++
	s.hist.add(seq, 1, pkt)
	s.sendLocked(pkt)
	s.host.cfg.Deliver(Delivery{Room: s.ref, Seq: seq, Record: rec})
	return seq, nil
}

func (s *Sequencer) sealLocked(first uint64, recs []wire.Record) ([]byte, error) {
	s.counter++
	pkt, err := sealBatch(make([]byte, 0, wire.MaxPacket), s.host.cfg.Identity, s.key, s.id, s.counter, first, recs)
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", s.ref, err)
	}
	return pkt, nil
}

func (s *Sequencer) sendLocked(pkt []byte) {
	s.lastSend = time.Now()
	st := s.host.cfg.Stats
	if err := s.host.cfg.Sender.WriteTo(pkt, s.group); err != nil {
		st.SendErrors.Add(1)
		s.host.log.Debug("multicast send failed", "room", s.ref, "err", err)
		return
	}
	st.PacketsSent.Add(1)
}

func (s *Sequencer) heartbeat(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSend) < Heartbeat {
		return
	}
	pkt, err := s.sealLocked(s.next, nil)
	if err != nil {
		s.host.log.Warn("heartbeat", "err", err)
		return
	}
	s.sendLocked(pkt)
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
		Lifetime: uint16(s.host.cfg.Lifetime / time.Second),
		Group:    s.group,
		Room:     s.name,
		Addrs:    addrs,
	}
	s.mu.Unlock()
	return SignAnnounce(s.host.cfg.Identity, &a)
}

// Members returns the room's participants, the host first.
func (s *Sequencer) Members() []wire.MemberInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.membersLocked()
}

func (s *Sequencer) membersLocked() []wire.MemberInfo {
	out := []wire.MemberInfo{{KeyID: s.keyID, Nick: s.host.cfg.Nick}}
	rest := make([]wire.MemberInfo, 0, len(s.members))
	for _, m := range s.members {
		rest = append(rest, wire.MemberInfo{KeyID: m.keyID, Nick: m.nick})
	}
	slices.SortFunc(rest, func(a, b wire.MemberInfo) int {
		if a.Nick < b.Nick {
			return -1
		}
		if a.Nick > b.Nick {
			return 1
		}
		return 0
	})
	return append(out, rest...)
}

// admit welcomes a member, sequences its join and queues, over its
// session, everything from where it asked to resume.
func (s *Sequencer) admit(m *hostSession, resume uint64) error {
	if err := ValidateNick(m.nick); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.members) >= wire.MaxMembers-1 {
		return fmt.Errorf("room %s is full (%d members)", s.ref, len(s.members)+1)
	}
	if m.keyID == s.keyID {
		return errors.New("the host cannot join its own room")
	}
	if old, ok := s.members[m.keyID]; ok {
		// The same key joining again is a member that restarted before
		// its old session timed out: the new session replaces it.
		s.dropLocked(old)
	}
	if m.nick == s.host.cfg.Nick {
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
	w := &wire.Welcome{
		Room:    s.id,
		Epoch:   s.key.epoch,
		Key:     s.key.key,
		Next:    start,
		Group:   s.group,
		Members: s.membersLocked(),
	}
	if !m.send(w) {
		return errors.New("member too slow")
	}
	s.members[m.keyID] = m
	// The resumed history and the join travel over the session as well as
	// multicast: the member joins the data group only now, and its first
	// packets must not depend on how fast that happens.
	s.resendLocked(m, start, s.next)
	if _, err := s.submitLocked(wire.Record{Kind: wire.KindJoin, KeyID: m.keyID, Nick: m.nick}); err != nil {
		delete(s.members, m.keyID)
		return err
	}
	s.hist.from(s.next-1, s.next, func(pkt []byte) bool { return m.send(pkt) })
	return nil
}

// part sequences a member's departure, unless a newer session of the same
// key replaced it.
func (s *Sequencer) part(m *hostSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[m.keyID] != m {
		return
	}
	s.dropLocked(m)
}

func (s *Sequencer) dropLocked(m *hostSession) {
	delete(s.members, m.keyID)
	m.close()
	if _, err := s.submitLocked(wire.Record{Kind: wire.KindPart, KeyID: m.keyID, Nick: m.nick}); err != nil {
		s.host.log.Warn("cannot sequence part", "room", s.ref, "err", err)
	}
}

// resendLocked sends a member, over its session, the packets holding
// sequence numbers from..end-1, first declaring the part of that range
// that has aged out of the history, so that the member tells its user of
// the gap rather than asking for it forever.
func (s *Sequencer) resendLocked(m *hostSession, from, end uint64) {
	if from >= end {
		return
	}
	held := s.hist.oldest()
	if held == 0 {
		held = s.next
	}
	if from < held {
		if !m.send(&wire.Gone{From: from, To: min(held, end)}) {
			return
		}
		from = held
	}
	s.hist.from(from, end, func(pkt []byte) bool { return m.send(pkt) })
}

// serveMember answers a member's frames until its session ends.
func (s *Sequencer) serveMember(m *hostSession, buf []byte) error {
	for {
		f, b, err := wire.ReadFrame(m.conn, buf)
		buf = b
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *wire.Say:
			said := &wire.Said{ID: f.ID}
			seq, err := s.memberSay(m, f.Text)
			if err != nil {
				said.Error = err.Error()
			}
			said.Seq = seq
			m.send(said)
		case *wire.Fetch:
			s.mu.Lock()
			end := f.From + uint64(f.Count)
			if end < f.From {
				end = s.next
			}
			s.resendLocked(m, f.From, min(end, s.next))
			s.mu.Unlock()
		default:
			return fmt.Errorf("unexpected frame %T from member", f)
		}
	}
}

func (s *Sequencer) memberSay(m *hostSession, text string) (uint64, error) {
	if err := ValidateText(text); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[m.keyID] != m {
		return 0, errors.New("not a member of the room")
	}
	return s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: m.keyID, Nick: m.nick, Text: text})
}

// hostSession is the host's end of one member's TLS session. Frames go out
// through a bounded queue drained by writeLoop, so a stuck member never
// blocks the sequencer; a member whose queue fills is dropped.
type hostSession struct {
	conn  *tls.Conn
	raw   net.Conn // closed directly: tls.Conn.Close would wait on a stuck write
	keyID [wire.KeyIDLen]byte
	fp    string
	nick  string
	out   chan []byte

	closeOnce sync.Once
	gone      chan struct{}
}

// send queues a frame and reports whether it was queued.
func (m *hostSession) send(f wire.Frame) bool {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		return false
	}
	select {
	case <-m.gone:
		return false
	default:
	}
	select {
	case m.out <- b:
		return true
	default:
		m.close()
		return false
	}
}

func (m *hostSession) close() {
	m.closeOnce.Do(func() {
		close(m.gone)
		m.raw.Close()
	})
}

func (m *hostSession) writeLoop() {
	for {
		select {
		case b := <-m.out:
			m.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := m.conn.Write(b); err != nil {
				m.close()
				return
			}
		case <-m.gone:
			return
		}
	}
}
