package rooms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"meshd/rooms/wire"
)

// Search paces: one query per TTL step (1, 2, 4, ... up to the ceiling),
// searchStep apart with ±searchJitter, so that daemons searching at the
// same moment drift apart.
const (
	searchStep   = 300 * time.Millisecond
	searchJitter = 0.2
	// maxSearches bounds the searches running at once (each is an API
	// request waiting for an answer).
	maxSearches = 64
)

// Answers wait a random answerMin..answerMax, shorter for answerers near
// the querier, so that the nearest answer goes first and the others,
// overhearing it, hold theirs back. answerMax stays well below the
// shortest search step (240 ms), so that an answer, even from a loaded
// daemon, comes back before the next step and the search reports the TTL
// that reached the room, not the one after it.
const (
	answerMin = 20 * time.Millisecond
	answerMax = 120 * time.Millisecond
	// answerGap is the least time between two answers for one room.
	answerGap = time.Second
	// answerFactor bounds the bytes of answers to this many times the bytes
	// of the queries that asked for them; answerCredit caps the credit
	// saved up, so a quiet hour does not pay for a burst.
	answerFactor = 3
	answerCredit = answerFactor * wire.QueryLen * 16
	// maxPendingAnswers bounds the answers waiting for their delay.
	maxPendingAnswers = 256
	// maxAnswered bounds the rooms remembered for answerGap.
	maxAnswered = 1024
)

// Per-source and global rates of discovery packets. An announcement costs
// a signature check (budgeted again in Directory); a query may cost an
// answer.
const (
	announceRate    = 50
	announceBurst   = 100
	queryRate       = 5
	queryBurst      = 20
	queryGlobalRate = 100
	discoSources    = 1024
)

// Relaying: the same announcement (Q, R, T) is passed on again only after a
// third of its lifetime, within relayAgainMin..relayAgainMax, which is
// what keeps a room listed beyond the relay without letting a loop of
// relays multiply it.
const (
	relayAgainMin = 100 * time.Millisecond
	relayAgainMax = 10 * time.Second
	maxRelayed    = 4096
	// MaxPeers bounds the static peers.
	MaxPeers = 64
)

// ErrNotFound means a search ended without an answer.
var ErrNotFound = errors.New("no answer")

// ErrTooManyPeers means a peer list would exceed MaxPeers.
var ErrTooManyPeers = fmt.Errorf("more than %d peers", MaxPeers)

// DiscoverySender sends the discovery packets. The daemon implements it
// over the discovery socket; tests record what is sent.
type DiscoverySender interface {
	// Multicast sends b to the discovery group with IP TTL ttl (0: the
	// socket's default), out of interface ifindex, or of every interface
	// if ifindex is 0.
	Multicast(b []byte, ttl, ifindex int) error
	// Unicast sends b to a peer's discovery socket.
	Unicast(b []byte, dst netip.AddrPort) error
	// Interfaces returns the indexes of the interfaces Multicast sends on.
	Interfaces() []int
}

// Source is where a discovery packet came from.
type Source struct {
	Addr      netip.AddrPort
	Multicast bool // sent to the discovery group, not to this daemon
	IfIndex   int  // arrival interface; 0 if unknown
	TTL       int  // IP TTL left on arrival; 0 if unknown
}

// DiscoveryConfig configures NewDiscovery.
type DiscoveryConfig struct {
	Directory *Directory
	Sender    DiscoverySender
	Stats     *Stats
	Logger    *slog.Logger
	Relay     bool // pass verified announcements on to the other interfaces and to peers
	RelayHops int  // the hop count a relayed announcement may reach
	Peers     []netip.AddrPort
	// Versions counts and reports packets of another protocol version;
	// nil means one of its own on Stats and Logger. The daemon shares one
	// with its data socket, so that a source is named once a minute in all.
	Versions *VersionWarner

	// For tests: the clock and the random source; nil means the real ones.
	Clock Clock
	Rand  func() float64
}

// Clock is the time source of Discovery: real time, or a test's.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; stop cancels that
	// and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Discovery is the discovery protocol beyond announcements: searches by
// expanding TTL, answers to other daemons' searches, relaying and static
// peers. It holds no socket: packets come in through HandlePacket and go
// out through the DiscoverySender. Safe for concurrent use.
type Discovery struct {
	dir      *Directory
	out      DiscoverySender
	stats    *Stats
	log      *slog.Logger
	clock    Clock
	rand     func() float64
	relay    bool
	hops     int
	annLimit *sourceLimiter
	qLimit   *sourceLimiter
	versions *VersionWarner

	mu       sync.Mutex
	peers    []netip.AddrPort
	qGlobal  bucket
	credit   float64 // answer bytes earned by queries, not yet spent
	pending  map[roomKey]*pendingAnswer
	answered map[answerKey]answered // last answer per room and destination
	relayed  map[relayKey]time.Time
	searches map[*search]struct{} // running, not yet answered
	nonces   map[uint64]bool      // of this daemon's queries, to ignore them looped back
	closed   bool
}

// answerKey is a room and where its answer went: the zero AddrPort for
// the group, a peer's address for unicast.
type answerKey struct {
	room roomKey
	to   netip.AddrPort
}

type answered struct {
	at  time.Time
	ttl int // for the group: the TTL it went out with
}

type relayKey struct {
	room   roomKey
	serial uint64
}

// pendingAnswer is an answer waiting for its delay.
type pendingAnswer struct {
	multicast  map[int]int // interface → TTL to answer with
	unicast    []netip.AddrPort
	suppressed bool
	stop       func() bool // the delay's timer
}

type search struct {
	SearchSpec
	found chan struct{} // closed on the first matching announcement
}

// SearchSpec says what a search looks for.
type SearchSpec struct {
	Name string
	// Key, if not nil, is the only host key that answers; it goes in the
	// query, so that only holders of that room answer.
	Key *[ed25519.PublicKeySize]byte
	// Fingerprint, if not "", is a prefix of the host's fingerprint that
	// an answer must have (the fp of "name@fp"), checked by the searcher.
	Fingerprint string
	// MaxTTL is the ceiling of the expanding TTL, 1..255.
	MaxTTL int
}

func (s *SearchSpec) matches(a *wire.Announce) bool {
	if s.Name != a.Room || s.Key != nil && *s.Key != a.HostKey {
		return false
	}
	return s.Fingerprint == "" || strings.HasPrefix(Fingerprint(a.HostKey[:]), s.Fingerprint)
}

// NewDiscovery returns a Discovery that files announcements in
// cfg.Directory and sends through cfg.Sender.
func NewDiscovery(cfg DiscoveryConfig) (*Discovery, error) {
	x := &Discovery{
		dir:      cfg.Directory,
		out:      cfg.Sender,
		stats:    cfg.Stats,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		rand:     cfg.Rand,
		relay:    cfg.Relay,
		hops:     cfg.RelayHops,
		annLimit: newSourceLimiter(announceRate, announceBurst, discoSources),
		qLimit:   newSourceLimiter(queryRate, queryBurst, discoSources),
		qGlobal:  bucket{rate: queryGlobalRate, burst: queryGlobalRate},
		pending:  make(map[roomKey]*pendingAnswer),
		answered: make(map[answerKey]answered),
		relayed:  make(map[relayKey]time.Time),
		searches: make(map[*search]struct{}),
		nonces:   make(map[uint64]bool),
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if x.clock == nil {
		x.clock = realClock{}
	}
	x.versions = cfg.Versions
	if x.versions == nil {
		x.versions = NewVersionWarner(x.stats, x.log)
	}
	if x.rand == nil {
		x.rand = rand.Float64
	}
	if err := x.SetPeers(cfg.Peers); err != nil {
		return nil, err
	}
	return x, nil
}

// SetPeers replaces the static peers.
func (x *Discovery) SetPeers(peers []netip.AddrPort) error {
	if len(peers) > MaxPeers {
		return ErrTooManyPeers
	}
	var list []netip.AddrPort
	for _, p := range peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		if !slices.Contains(list, p) {
			list = append(list, p)
		}
	}
	x.mu.Lock()
	x.peers = list
	x.mu.Unlock()
	return nil
}

// Peers returns the static peers.
func (x *Discovery) Peers() []netip.AddrPort {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.peers)
}

// SendToPeers sends b, one of this daemon's own announcements, to every
// static peer.
func (x *Discovery) SendToPeers(b []byte) {
	for _, p := range x.Peers() {
		x.unicast(b, p)
	}
}

func (x *Discovery) unicast(b []byte, dst netip.AddrPort) bool {
	if err := x.out.Unicast(b, dst); err != nil {
		x.stats.SendErrors.Add(1)
		x.log.Debug("discovery send", "to", dst, "err", err)
		return false
	}
	return true
}

func (x *Discovery) multicast(b []byte, ttl, ifindex int) bool {
	if err := x.out.Multicast(b, ttl, ifindex); err != nil {
		x.stats.SendErrors.Add(1)
		x.log.Debug("discovery send", "ttl", ttl, "interface", ifindex, "err", err)
		return false
	}
	return true
}

// HandlePacket takes one packet from the discovery socket. Every packet
// ends up filed, answered, relayed or counted as dropped.
func (x *Discovery) HandlePacket(b []byte, src Source) {
	typ, err := wire.PacketType(b)
	if errors.Is(err, wire.ErrVersion) && len(b) <= wire.MaxPacket {
		x.versions.Heard(wire.PeerVersion(b), src.Addr.Addr(), x.clock.Now())
		return
	}
	if err != nil || len(b) > wire.MaxPacket {
		x.stats.AnnounceMalformed.Add(1)
		return
	}
	switch typ {
	case wire.TypeAnnounce:
		x.handleAnnounce(b, 0, src)
	case wire.TypeRelay:
		rl, err := wire.ParseRelay(b)
		if err != nil {
			x.stats.AnnounceMalformed.Add(1)
			return
		}
		x.handleAnnounce(rl.Announce, int(rl.Hops), src)
	case wire.TypeQuery:
		x.handleQuery(b, src)
	default:
		x.stats.AnnounceMalformed.Add(1)
	}
}

func (x *Discovery) handleAnnounce(b []byte, hops int, src Source) {
	now := x.clock.Now()
	if !x.annLimit.allow(src.Addr.Addr(), now) {
		x.stats.AnnounceLimited.Add(1)
		return
	}
	if err := x.dir.HandleAnnounce(b, now); err != nil {
		x.log.Debug("announcement dropped", "from", src.Addr, "err", err)
		return
	}
	// HandleAnnounce parsed it already; parsing again is cheaper than
	// handing the result back through every caller.
	a, err := wire.ParseAnnounce(b)
	if err != nil {
		return
	}
	k := roomKey{q: a.HostKey, name: a.Room}
	x.mu.Lock()
	if p := x.pending[k]; p != nil {
		p.suppressed = true
	}
	var done []*search
	for s := range x.searches {
		if s.matches(&a) {
			done = append(done, s)
			delete(x.searches, s)
		}
	}
	x.mu.Unlock()
	for _, s := range done {
		close(s.found)
	}
	if x.relay {
		x.relayOn(b, a, hops, src, now)
	}
}

// relayOn passes a verified announcement on to the interfaces and peers
// other than the one it came from, with its hop count raised.
func (x *Discovery) relayOn(b []byte, a wire.Announce, hops int, src Source, now time.Time) {
	if hops >= x.hops {
		x.stats.RelayHopLimit.Add(1)
		return
	}
	k := relayKey{room: roomKey{q: a.HostKey, name: a.Room}, serial: a.Serial}
	again := min(max(time.Duration(a.Lifetime)*time.Second/3, relayAgainMin), relayAgainMax)
	x.mu.Lock()
	if last, ok := x.relayed[k]; ok && now.Sub(last) < again {
		x.mu.Unlock()
		x.stats.RelayDuplicates.Add(1)
		return
	}
	if len(x.relayed) >= maxRelayed {
		for rk, t := range x.relayed {
			if now.Sub(t) >= relayAgainMax {
				delete(x.relayed, rk)
			}
		}
		if len(x.relayed) >= maxRelayed {
			// Full of announcements younger than relayAgainMax: a flood.
			// Forgetting one early only means relaying it again early.
			for rk := range x.relayed {
				delete(x.relayed, rk)
				break
			}
		}
	}
	x.relayed[k] = now
	peers := slices.Clone(x.peers)
	x.mu.Unlock()

	pkt, err := wire.AppendRelay(make([]byte, 0, wire.RelayOverhead+len(b)), uint8(hops+1), b)
	if err != nil {
		return
	}
	sent := false
	for _, ifi := range x.out.Interfaces() {
		if src.Multicast && ifi == src.IfIndex {
			continue
		}
		sent = x.multicast(pkt, 0, ifi) || sent
	}
	for _, p := range peers {
		if !src.Multicast && p == src.Addr {
			continue
		}
		sent = x.unicast(pkt, p) || sent
	}
	if sent {
		x.stats.RelayedSent.Add(1)
	}
}

func (x *Discovery) handleQuery(b []byte, src Source) {
	q, err := wire.ParseQuery(b)
	if err != nil {
		x.stats.QueriesMalformed.Add(1)
		return
	}
	x.stats.QueriesReceived.Add(1)
	x.stats.QueryBytesReceived.Add(int64(len(b)))
	now := x.clock.Now()
	x.mu.Lock()
	own := x.nonces[q.Nonce]
	x.mu.Unlock()
	if own {
		return // our own query, looped back
	}
	if !x.qLimit.allow(src.Addr.Addr(), now) {
		x.stats.QueriesLimited.Add(1)
		return
	}
	// The global rate is checked before the directory is searched, so a
	// flood from many sources costs no more than queryGlobalRate lookups.
	x.mu.Lock()
	if !x.qGlobal.allow(now) {
		x.mu.Unlock()
		x.stats.QueriesLimited.Add(1)
		return
	}
	x.credit = min(x.credit+float64(answerFactor*len(b)), answerCredit)
	x.mu.Unlock()
	var key *[ed25519.PublicKeySize]byte
	if q.HasKey {
		key = &q.HostKey
	}
	matches := x.dir.Match(q.Room, key, now)

	x.mu.Lock()
	defer x.mu.Unlock()
	// Nearer answerers (fewer hops taken by the query) answer earlier.
	near := 0.0
	if src.Multicast && src.TTL > 0 && int(q.TTL) >= src.TTL {
		near = float64(int(q.TTL)-src.TTL) / float64(q.TTL)
	}
	for _, kn := range matches {
		k := roomKey{q: kn.HostKey, name: kn.Room}
		// One answer per room a second to each destination; to the group,
		// an answer that reaches further (a larger TTL) than the last one
		// is not a repeat: without it, a querier beyond the reach of the
		// last answer would wait out the second.
		ak := answerKey{room: k}
		if !src.Multicast {
			ak.to = src.Addr
		}
		if last, ok := x.answered[ak]; ok && now.Sub(last.at) < answerGap && (!src.Multicast || int(q.TTL) <= last.ttl) {
			continue
		}
		p := x.pending[k]
		if p == nil {
			if len(x.pending) >= maxPendingAnswers || x.closed {
				continue
			}
			p = &pendingAnswer{multicast: make(map[int]int)}
			x.pending[k] = p
			frac := near*0.5 + x.rand()*0.5
			delay := answerMin + time.Duration(frac*float64(answerMax-answerMin))
			p.stop = x.clock.AfterFunc(delay, func() { x.answer(k) })
		}
		if src.Multicast {
			p.multicast[src.IfIndex] = max(p.multicast[src.IfIndex], int(q.TTL))
		} else if len(p.unicast) < 4 && !slices.Contains(p.unicast, src.Addr) {
			p.unicast = append(p.unicast, src.Addr)
		}
	}
}

// answer sends the announcement of room k to those whose queries asked
// for it, unless another daemon's answer was overheard meanwhile. Answers
// to the group go out with the TTL the query came with, so they reach as
// far as it did.
func (x *Discovery) answer(k roomKey) {
	now := x.clock.Now()
	x.mu.Lock()
	p := x.pending[k]
	delete(x.pending, k)
	if p == nil {
		x.mu.Unlock()
		return
	}
	if p.suppressed {
		x.mu.Unlock()
		x.stats.AnswersSuppressed.Add(1)
		return
	}
	x.mu.Unlock()
	kn, ok := x.dir.Get(k.q, k.name, now)
	if !ok {
		return // lapsed meanwhile
	}
	type dest struct {
		ttl, ifindex int
		addr         netip.AddrPort // unicast, if valid
	}
	var dests []dest
	for ifi, ttl := range p.multicast {
		dests = append(dests, dest{ttl: ttl, ifindex: ifi})
	}
	for _, a := range p.unicast {
		dests = append(dests, dest{addr: a})
	}
	size := float64(len(kn.Raw))
	for _, d := range dests {
		x.mu.Lock()
		if x.credit < size {
			x.mu.Unlock()
			x.stats.AnswersOverBudget.Add(1)
			continue
		}
		x.credit -= size
		x.answered[answerKey{room: k, to: d.addr}] = answered{at: now, ttl: d.ttl}
		if len(x.answered) > maxAnswered {
			for ak, a := range x.answered {
				if now.Sub(a.at) >= answerGap {
					delete(x.answered, ak)
				}
			}
		}
		x.mu.Unlock()
		var sent bool
		if d.addr.IsValid() {
			sent = x.unicast(kn.Raw, d.addr)
		} else {
			sent = x.multicast(kn.Raw, d.ttl, d.ifindex)
		}
		if sent {
			x.stats.AnswersSent.Add(1)
			x.stats.AnswerBytesSent.Add(int64(len(kn.Raw)))
		}
	}
}

// SearchTTLs returns the TTL steps of a search up to ceiling: 1, 2, 4, ...
// and the ceiling itself last.
func SearchTTLs(ceiling int) []int {
	var ttls []int
	for t := 1; t < ceiling; t *= 2 {
		ttls = append(ttls, t)
	}
	return append(ttls, max(ceiling, 1))
}

// SearchResult is what a successful search found.
type SearchResult struct {
	TTL     int           // the TTL of the query that was answered
	Elapsed time.Duration // from the first query to the answer
}

// Search looks for a room by multicasting queries with rising TTL
// (SearchTTLs(spec.MaxTTL)) and sending them to the static peers, until
// an announcement that matches spec arrives; the room is then in the
// directory. It returns ErrNotFound when the last step went unanswered.
func (x *Discovery) Search(ctx context.Context, spec SearchSpec) (SearchResult, error) {
	if err := ValidateName(spec.Name); err != nil {
		return SearchResult{}, err
	}
	if spec.MaxTTL < 1 || spec.MaxTTL > 255 {
		return SearchResult{}, fmt.Errorf("search TTL %d is out of range 1..255", spec.MaxTTL)
	}
	name, key, maxTTL := spec.Name, spec.Key, spec.MaxTTL
	x.stats.Searches.Add(1)
	start := x.clock.Now()
	s := &search{SearchSpec: spec, found: make(chan struct{})}
	x.mu.Lock()
	if len(x.searches) >= maxSearches {
		x.mu.Unlock()
		return SearchResult{}, fmt.Errorf("too many searches at once (%d); try again shortly", maxSearches)
	}
	// Registered before the first query, so no answer can beat it; an
	// answer to an earlier step still counts.
	x.searches[s] = struct{}{}
	x.mu.Unlock()
	var nonces []uint64
	defer func() {
		x.mu.Lock()
		delete(x.searches, s)
		for _, n := range nonces {
			delete(x.nonces, n)
		}
		x.mu.Unlock()
	}()
	prev := 0
	for _, ttl := range SearchTTLs(maxTTL) {
		// An answer that came as the last step's wait ended answers that
		// step's query, which is the TTL that found the room.
		if prev > 0 {
			select {
			case <-s.found:
				return SearchResult{TTL: prev, Elapsed: x.clock.Now().Sub(start)}, nil
			default:
			}
		}
		prev = ttl
		q := wire.Query{Nonce: rand.Uint64(), TTL: uint8(ttl), Room: name}
		if key != nil {
			q.HasKey, q.HostKey = true, *key
		}
		pkt, err := wire.AppendQuery(make([]byte, 0, wire.QueryLen), &q)
		if err != nil {
			return SearchResult{}, err
		}
		x.mu.Lock()
		x.nonces[q.Nonce] = true
		nonces = append(nonces, q.Nonce)
		peers := slices.Clone(x.peers)
		x.mu.Unlock()
		x.multicast(pkt, ttl, 0)
		for _, p := range peers {
			x.unicast(pkt, p)
		}
		wait := time.Duration(float64(searchStep) * (1 - searchJitter + 2*searchJitter*x.rand()))
		tick := make(chan struct{})
		stop := x.clock.AfterFunc(wait, func() { close(tick) })
		select {
		case <-s.found:
			stop()
			return SearchResult{TTL: ttl, Elapsed: x.clock.Now().Sub(start)}, nil
		case <-ctx.Done():
			stop()
			return SearchResult{}, ctx.Err()
		case <-tick:
		}
	}
	return SearchResult{}, fmt.Errorf("room %q: %w to a search up to TTL %d", name, ErrNotFound, maxTTL)
}

// Close cancels the answers waiting for their delay; later queries are
// not answered. Searches end with their contexts.
func (x *Discovery) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	for k, p := range x.pending {
		p.stop()
		delete(x.pending, k)
	}
}
