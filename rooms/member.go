package rooms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"meshd/rooms/secure"
	"meshd/rooms/wire"
)

// MemberConfig is what a Member needs from the daemon.
type MemberConfig struct {
	Identity *Identity
	Stats    *Stats
	Logger   *slog.Logger
	Deliver  func(Delivery)          // must not block
	OnState  func(ref, state string) // hears "connected" and "disconnected"; must not block
	// OnGap hears of records from..through that the host no longer holds,
	// which this member will therefore never deliver; must not block.
	OnGap func(ref string, from, through uint64)
	// OnReceipt hears how many members hold a line this member said;
	// must not block.
	OnReceipt func(ref string, seq uint64, seen, of int)
	JoinData  func(netip.Addr) error // joins the room's data group on the daemon's data socket
	// LeaveData leaves a group JoinData joined, when the host moves the
	// room to another group.
	LeaveData func(netip.Addr)
	Sender    PacketSender                    // multicasts this member's NACKs
	Resolve   func(ref string) (Known, error) // fresh join addresses for reconnects
	// Path is "auto" (multicast, with the session as fallback when
	// multicast does not arrive or is too lossy), "multicast" or "tcp".
	Path string
	// Dial opens the TCP connection to a host; nil means net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Member states reported to OnState, and paths.
const (
	StateConnected    = "connected"
	StateDisconnected = "disconnected"
	StateRefused      = "refused" // the host refused a rejoin: kicked or banned

	PathAuto      = "auto"
	PathMulticast = "multicast"
	PathTCP       = "tcp"
)

const (
	dialTimeout = 5 * time.Second
	// Reconnects are a SYN each: cheap enough to try every few seconds,
	// so a member back in range resumes soon.
	maxBackoff = 5 * time.Second
	minBackoff = 500 * time.Millisecond
)

// Member is this daemon's membership of one room hosted elsewhere: it keeps
// a session to the host (rooms/secure), rebuilds the room's blocks from multicast
// shards, verifies and delivers their records in sequence order, asks for
// repairs, and falls back to its session when multicast fails it. Safe for
// concurrent use.
type Member struct {
	cfg     MemberConfig
	log     *slog.Logger
	ref     string
	name    string
	hostKey ed25519.PublicKey
	nick    string
	keyID   [wire.KeyIDLen]byte
	// cred is shown at every join; its token only until the first
	// succeeds. Set before run starts, read and changed only by the
	// goroutine that connects.
	cred   Credential
	cancel context.CancelFunc
	done   chan struct{}

	wmu sync.Mutex // serialises frames written to the session

	mu      sync.Mutex
	conn    *secure.Conn
	id      [wire.RoomIDLen]byte
	opts    *ed25519.Options // batches' signature context
	bopts   *ed25519.Options // blocks'
	key     *epochKey
	mac     *blockMAC // this session's slot and key in small blocks' MACs; nil: none
	group   netip.AddrPort
	state   string
	sayID   uint32
	waiters map[uint32]chan *wire.Said
	closed  bool
	path    string // PathAuto, PathMulticast or PathTCP
	members map[[wire.KeyIDLen]byte]string
	rx      receiver
	// The session's id for NACKs, from its Welcome, and the number of the
	// last NACK made in it: the host accepts each number once.
	nackSession, nackCounter uint64
}

// newMember returns a Member of kn, not yet connected, that resumes at
// sequence number resume (0: wherever the host says).
func newMember(cfg MemberConfig, kn Known, nick string, resume uint64, cred Credential) *Member {
	if cfg.Path == "" {
		cfg.Path = PathAuto
	}
	m := &Member{
		cfg:     cfg,
		ref:     kn.Ref(),
		name:    kn.Room,
		hostKey: slices.Clone(kn.Key()),
		nick:    nick,
		keyID:   KeyID(cfg.Identity.Pub),
		cred:    cred,
		path:    cfg.Path,
		done:    make(chan struct{}),
		waiters: make(map[uint32]chan *wire.Said),
		rx:      newReceiver(),
	}
	m.log = cfg.Logger.With("room", m.ref)
	m.rx.next = resume
	return m
}

// ErrRefused means the host turned the join down; the error says why.
var ErrRefused = errors.New("join refused")

// Join joins room kn as nick, showing cred if the room is not open. It
// returns once the host has admitted the member, or with the reason it
// could not; afterwards the member keeps its session, reconnecting when it
// drops, until Close.
func Join(ctx context.Context, cfg MemberConfig, kn Known, nick string, resume uint64, cred Credential) (*Member, error) {
	if err := ValidateNick(nick); err != nil {
		return nil, err
	}
	m := newMember(cfg, kn, nick, resume, cred)
	conn, w, err := m.connect(ctx, kn, resume)
	if err != nil {
		return nil, err
	}
	if err := m.welcome(conn, w); err != nil {
		conn.Close()
		return nil, err
	}
	// The host has put the key on the room's allowlist: the token is
	// spent.
	m.cred.Token = nil
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(runCtx, conn)
	return m, nil
}

// Ref returns the room's name@fingerprint.
func (m *Member) Ref() string { return m.ref }

// Name returns the room's name.
func (m *Member) Name() string { return m.name }

// Nick returns the nick this member joined with.
func (m *Member) Nick() string { return m.nick }

// HostKey returns the room's host key Q.
func (m *Member) HostKey() ed25519.PublicKey { return m.hostKey }

// ID returns the room id its data packets carry.
func (m *Member) ID() [wire.RoomIDLen]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// State returns "connected" or "disconnected".
func (m *Member) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Group returns the room's data group.
func (m *Member) Group() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.group
}

// Members returns the room's participants as this member knows them.
func (m *Member) Members() []wire.MemberInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]wire.MemberInfo, 0, len(m.members))
	for id, nick := range m.members {
		out = append(out, wire.MemberInfo{KeyID: id, Nick: nick})
	}
	hostID := KeyID(m.hostKey)
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case a.KeyID == hostID:
			return b.KeyID != hostID
		case b.KeyID == hostID:
			return false
		}
		return a.Nick < b.Nick
	})
	return out
}

// connect dials the room's join addresses in turn and asks to be admitted,
// resuming at sequence number resume (0: from now).
func (m *Member) connect(ctx context.Context, kn Known, resume uint64) (*secure.Conn, *wire.Welcome, error) {
	dial := m.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var errs []error
	for _, ap := range kn.Addrs {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		raw, err := dial(dctx, "tcp", ap.String())
		if err != nil {
			cancel()
			errs = append(errs, err)
			continue
		}
		conn, w, err := m.hello(dctx, raw, resume)
		cancel()
		if err == nil {
			return conn, w, nil
		}
		raw.Close()
		// A key mismatch or a refusal is the host's answer, not a path
		// problem: trying the next address would only hide it.
		if errors.Is(err, ErrHostKeyMismatch) || errors.Is(err, ErrRefused) {
			return nil, nil, err
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("join %s: cannot reach the host: %w", m.ref, errors.Join(errs...))
}

// hello opens the session over raw, checking that the host holds the
// room's key, and asks to be admitted.
func (m *Member) hello(ctx context.Context, raw net.Conn, resume uint64) (*secure.Conn, *wire.Welcome, error) {
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
		defer raw.SetDeadline(time.Time{})
	}
	conn, err := secure.Client(ctx, raw, secure.Config{Static: m.cfg.Identity.static, Tampered: m.cfg.Stats.tampered}, m.hostKey)
	if err != nil {
		return nil, nil, fmt.Errorf("join %s: %w", m.ref, hostKeyErr(err))
	}
	b, err := wire.AppendFrame(nil, &wire.Hello{Room: m.name, Nick: m.nick, Resume: resume, Cred: m.credential(conn)})
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, fmt.Errorf("join %s: %w", m.ref, err)
	}
	f, _, err := wire.ReadFrame(conn, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("join %s: no answer from host: %w", m.ref, err)
	}
	switch f := f.(type) {
	case *wire.Welcome:
		return conn, f, nil
	case *wire.Refuse:
		return nil, nil, fmt.Errorf("%w: %s", ErrRefused, f.Reason)
	}
	return nil, nil, fmt.Errorf("join %s: unexpected frame %T from host", m.ref, f)
}

// credential returns what the Hello on conn shows the host: the invite
// token, or the proof of the passphrase bound to this session, or nothing.
func (m *Member) credential(conn *secure.Conn) []byte {
	switch {
	case m.cred.Token != nil:
		return m.cred.Token
	case m.cred.Key != nil:
		return joinProof(*m.cred.Key, conn.ChannelBinding(), m.cfg.Identity.Pub)
	}
	return nil
}

// PassphraseKey returns the key this member proves a passphrase room's
// passphrase with, nil for other rooms, so that the daemon can rejoin
// after a restart.
func (m *Member) PassphraseKey() *[32]byte { return m.cred.Key }

// welcome takes the room's key and position from the host.
func (m *Member) welcome(conn *secure.Conn, w *wire.Welcome) error {
	k, err := newEpochKey(w.Epoch, w.Key)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("member closed")
	}
	if w.Group != m.group {
		if err := m.cfg.JoinData(w.Group.Addr()); err != nil {
			return fmt.Errorf("join %s: data group %v: %w", m.ref, w.Group, err)
		}
		if m.group.IsValid() {
			m.cfg.LeaveData(m.group.Addr())
		}
	}
	switch {
	case m.rx.next == 0:
	case w.Next > m.rx.next:
		// The host answers a resume with Gone for what it lacks, so this
		// happens only if it skipped that; declare it all the same.
		m.gapLocked(w.Next)
	case w.Next < m.rx.next:
		// The host lost its state directory and started the room's
		// sequence again: follow it, and say plainly that it moved.
		m.log.Warn("host restarted the room's sequence", "had", m.rx.next, "host", w.Next)
		clear(m.rx.pending)
	}
	m.conn, m.id, m.key, m.group = conn, w.Room, k, w.Group
	m.nackSession, m.nackCounter = w.Session, 0
	m.opts, m.bopts = batchOpts(w.Room), blockOpts(w.Room)
	m.mac = nil
	if w.MACSlot != wire.NoMACSlot {
		m.mac = newBlockMAC(w.MACSlot, w.MACKey)
	}
	m.rx.reset(w.Next, w.Block, time.Now())
	m.members = make(map[[wire.KeyIDLen]byte]string, len(w.Members))
	for _, mi := range w.Members {
		m.members[mi.KeyID] = mi.Nick
	}
	m.setStateLocked(StateConnected)
	return nil
}

func (m *Member) setStateLocked(s string) {
	if m.state == s {
		return
	}
	m.state = s
	if m.cfg.OnState != nil {
		m.cfg.OnState(m.ref, s)
	}
}

// run serves the session and reconnects when it drops, until ctx ends.
func (m *Member) run(ctx context.Context, conn *secure.Conn) {
	defer close(m.done)
	backoff := minBackoff
	for {
		err := m.serveSession(ctx, conn)
		m.mu.Lock()
		m.conn = nil
		for id, ch := range m.waiters {
			close(ch)
			delete(m.waiters, id)
		}
		m.setStateLocked(StateDisconnected)
		m.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("session to host lost", "err", err)
		for {
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			kn, err := m.cfg.Resolve(m.ref)
			if err != nil {
				continue
			}
			m.mu.Lock()
			resume := m.rx.next
			m.mu.Unlock()
			c, w, err := m.connect(ctx, kn, resume)
			if errors.Is(err, ErrRefused) || errors.Is(err, ErrHostKeyMismatch) {
				// The host's answer, not a path problem: asking again
				// would change nothing.
				m.log.Warn("the host will not have this member back", "err", err)
				m.mu.Lock()
				m.setStateLocked(StateRefused)
				m.mu.Unlock()
				<-ctx.Done()
				return
			}
			if err != nil {
				m.log.Debug("reconnect failed", "err", err)
				continue
			}
			if err := m.welcome(c, w); err != nil {
				c.Close()
				continue
			}
			m.log.Info("session to host restored")
			conn, backoff = c, minBackoff
			break
		}
	}
}

// serveSession reads the host's frames until the session ends, while a
// second goroutine reports progress and chooses the path once a second.
func (m *Member) serveSession(ctx context.Context, conn *secure.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.keepalive(ctx, conn) })
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	return m.serve(conn)
}

// serve reads the host's frames until the session ends.
func (m *Member) serve(conn *secure.Conn) error {
	defer conn.Close()
	var buf []byte
	for {
		// The host answers the once-a-second ack, so a session silent
		// for memberIdle is dead, whether or not TCP has noticed.
		conn.SetReadDeadline(time.Now().Add(memberIdle))
		f, b, err := wire.ReadFrame(conn, buf)
		buf = b
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *wire.BatchFrame:
			m.cfg.Stats.DataFetched.Add(1)
			m.mu.Lock()
			before := m.rx.next
			m.batchLocked(f.Batch, time.Now())
			if m.rx.next > before {
				// A catch-up in progress: ask for the next part as soon as
				// this one is in, not a fetchRetry later.
				m.rx.nextFetch = time.Time{}
			}
			m.mu.Unlock()
		case *wire.Ack:
			m.mu.Lock()
			m.rx.highest = max(m.rx.highest, f.Seq+1)
			m.sequenceStateLocked(time.Now())
			m.mu.Unlock()
		case *wire.Gone:
			m.mu.Lock()
			m.goneLocked(f)
			m.mu.Unlock()
		case *wire.Said:
			m.mu.Lock()
			ch := m.waiters[f.ID]
			delete(m.waiters, f.ID)
			m.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case *wire.Rekey:
			k, err := newEpochKey(f.Epoch, f.Key)
			if err != nil {
				return err
			}
			m.mu.Lock()
			m.key = k
			m.rx.newEpoch()
			m.mu.Unlock()
		case *wire.Stream:
			m.streamAnswer(f)
		case *wire.Seen:
			m.mu.Lock()
			m.rx.seen(f)
			m.mu.Unlock()
			if m.cfg.OnReceipt != nil {
				m.cfg.OnReceipt(m.ref, f.Seq, int(f.Seen), int(f.Of))
			}
		default:
			return fmt.Errorf("unexpected frame %T from host", f)
		}
	}
}

// write sends one frame over the session.
func (m *Member) write(conn *secure.Conn, f wire.Frame) error {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		return err
	}
	m.wmu.Lock()
	defer m.wmu.Unlock()
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = conn.Write(b)
	return err
}

// ErrNotConnected means the session to the host is down; it is being
// restored.
var ErrNotConnected = errors.New("not connected to the room's host; reconnecting")

// Say asks the host to sequence text and returns the place it got.
func (m *Member) Say(ctx context.Context, text string) (uint64, error) {
	if err := ValidateText(text); err != nil {
		return 0, err
	}
	ch := make(chan *wire.Said, 1)
	m.mu.Lock()
	conn := m.conn
	if conn == nil {
		m.mu.Unlock()
		return 0, ErrNotConnected
	}
	m.sayID++
	id := m.sayID
	m.waiters[id] = ch
	m.mu.Unlock()

	if err := m.write(conn, &wire.Say{ID: id, Text: text}); err != nil {
		m.mu.Lock()
		delete(m.waiters, id)
		m.mu.Unlock()
		return 0, fmt.Errorf("say in %s: %w", m.ref, err)
	}
	select {
	case said, ok := <-ch:
		if !ok {
			return 0, fmt.Errorf("say in %s: session lost before the host answered; the line may or may not have been sequenced", m.ref)
		}
		if said.Error != "" {
			return 0, fmt.Errorf("host refused the line: %s", said.Error)
		}
		return said.Seq, nil
	case <-ctx.Done():
		m.mu.Lock()
		delete(m.waiters, id)
		m.mu.Unlock()
		return 0, ctx.Err()
	}
}

// SayLines says texts, each a message of its own, in order, and returns
// the first's sequence number. A member's lines go one after another,
// each once the host has answered the last; others' lines may come
// between them (the host's own paste, Sequencer.SayLines, stays
// together). If one fails, the error says which were sent.
func (m *Member) SayLines(ctx context.Context, texts []string) (first, last uint64, err error) {
	if len(texts) == 0 {
		return 0, 0, errors.New("no lines to say")
	}
	for i, text := range texts {
		if err := ValidateText(text); err != nil {
			return 0, 0, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	for i, text := range texts {
		seq, err := m.Say(ctx, text)
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("lines 1 to %d were sent, the first as #%d and the last as #%d; line %d: %w", i, first, last, i+1, err)
			}
			return first, last, err
		}
		if i == 0 {
			first = seq
		}
		last = seq
	}
	return first, last, nil
}

// Receipt returns how many members held line seq, of how many, when the
// host last said; ok is false if it has not said yet.
func (m *Member) Receipt(seq uint64) (seen, of int, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rx.receipts[seq]
	return int(r.Seen), int(r.Of), ok
}

// LastSeq returns the newest sequence number delivered.
func (m *Member) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(m.rx.next, 1) - 1
}

// Path returns how the room reaches this member now: "multicast" or "tcp".
func (m *Member) Path() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rx.streaming {
		return PathTCP
	}
	return PathMulticast
}

// SetPath changes how the room reaches this member (PathAuto,
// PathMulticast or PathTCP); the member moves within a second.
func (m *Member) SetPath(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.path = path
}

// Close leaves the room: the session ends, and the host sequences the
// part. It returns once the member's goroutines have stopped.
func (m *Member) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.done
		return nil
	}
	m.closed = true
	m.rx.stopTimers()
	conn := m.conn
	m.mu.Unlock()
	m.cancel()
	if conn != nil {
		conn.Close()
	}
	<-m.done
	return nil
}
