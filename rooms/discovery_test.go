package rooms

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"meshd/rooms/wire"
)

// fakeClock is a Clock that moves only when the test says so; due timers
// run in the goroutine that calls Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: dirNow} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// pending returns the delays of the timers not yet fired or stopped.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, t := range c.timers {
		if !t.stopped {
			out = append(out, t.at.Sub(c.now))
		}
	}
	return out
}

// Advance moves the clock by d, firing the timers that fall due in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		next.stopped = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

type sent struct {
	b       []byte
	ttl     int
	ifindex int
	to      netip.AddrPort // unicast
}

// fakeSender records what a Discovery sends.
type fakeSender struct {
	ifaces []int
	ch     chan sent
}

func newFakeSender(ifaces ...int) *fakeSender {
	return &fakeSender{ifaces: ifaces, ch: make(chan sent, 1000)}
}

func (s *fakeSender) Multicast(b []byte, ttl, ifindex int) error {
	s.ch <- sent{b: slices.Clone(b), ttl: ttl, ifindex: ifindex}
	return nil
}

func (s *fakeSender) Unicast(b []byte, dst netip.AddrPort) error {
	s.ch <- sent{b: slices.Clone(b), to: dst}
	return nil
}

func (s *fakeSender) Interfaces() []int { return s.ifaces }

func (s *fakeSender) take() []sent {
	var out []sent
	for {
		select {
		case p := <-s.ch:
			out = append(out, p)
		default:
			return out
		}
	}
}

func (s *fakeSender) next(t *testing.T) sent {
	t.Helper()
	select {
	case p := <-s.ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent")
		return sent{}
	}
}

type discoRig struct {
	x     *Discovery
	dir   *Directory
	stats *Stats
	clock *fakeClock
	out   *fakeSender
}

func newDiscoRig(t *testing.T, cfg DiscoveryConfig) *discoRig {
	t.Helper()
	r := &discoRig{stats: new(Stats), clock: newFakeClock(), out: newFakeSender(1, 2)}
	r.dir = NewDirectory(r.stats, nil)
	cfg.Directory, cfg.Sender, cfg.Stats, cfg.Clock = r.dir, r.out, r.stats, r.clock
	if cfg.Rand == nil {
		cfg.Rand = func() float64 { return 0.5 }
	}
	x, err := NewDiscovery(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	r.x = x
	return r
}

var (
	querier = Source{Addr: netip.MustParseAddrPort("10.0.0.9:7701"), Multicast: true, IfIndex: 1, TTL: 4}
	peerSrc = Source{Addr: netip.MustParseAddrPort("10.9.0.1:7701")}
)

func queryPacket(t testing.TB, name string, ttl int, nonce uint64) []byte {
	t.Helper()
	b, err := wire.AppendQuery(nil, &wire.Query{Nonce: nonce, TTL: uint8(ttl), Room: name})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSearchTTLs(t *testing.T) {
	for ceiling, want := range map[int][]int{
		1:  {1},
		2:  {1, 2},
		3:  {1, 2, 3},
		4:  {1, 2, 4},
		32: {1, 2, 4, 8, 16, 32},
		40: {1, 2, 4, 8, 16, 32, 40},
	} {
		if got := SearchTTLs(ceiling); !slices.Equal(got, want) {
			t.Errorf("SearchTTLs(%d) = %v, want %v", ceiling, got, want)
		}
	}
}

// A search sends a query per step with rising TTL, to the group and to the
// peers, and stops at the first answer.
func TestSearchExpandsAndStops(t *testing.T) {
	peer := netip.MustParseAddrPort("10.9.0.1:7701")
	r := newDiscoRig(t, DiscoveryConfig{Peers: []netip.AddrPort{peer}})
	host := seededIdentity(1)
	ann := signTestAnnounce(t, host, testAnnounce("far", 1))

	type result struct {
		res SearchResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.x.Search(t.Context(), SearchSpec{Name: "far", MaxTTL: 32})
		done <- result{res, err}
	}()
	for _, ttl := range []int{1, 2, 4} {
		m := r.out.next(t)
		q, err := wire.ParseQuery(m.b)
		if err != nil || m.ttl != ttl || m.ifindex != 0 || int(q.TTL) != ttl || q.Room != "far" || q.HasKey {
			t.Fatalf("step %d sent %+v (%+v, %v), want a query for far with TTL %d to every interface", ttl, m, q, err, ttl)
		}
		if u := r.out.next(t); u.to != peer || !slices.Equal(u.b, m.b) {
			t.Fatalf("step %d: to peer %+v, want the same query to %v", ttl, u, peer)
		}
		// The query comes back over loopback and is not answered.
		r.x.HandlePacket(m.b, Source{Addr: netip.MustParseAddrPort("10.0.0.1:7701"), Multicast: true, IfIndex: 1})
		if ttl < 4 {
			// 300 ms ± 20 %; Rand gives the middle.
			waitTimers(t, r.clock, 1)
			r.clock.Advance(300 * time.Millisecond)
		}
	}
	r.x.HandlePacket(ann, querier)
	res := <-done
	if res.err != nil || res.res.TTL != 4 {
		t.Fatalf("Search = %+v, %v; want found at TTL 4", res.res, res.err)
	}
	if got := r.out.take(); len(got) != 0 {
		t.Errorf("sent %d more packets after the answer", len(got))
	}
	if r.stats.Searches.Load() != 1 || r.stats.QueriesReceived.Load() != 3 || r.stats.AnswersSent.Load() != 0 {
		t.Errorf("searches %d, queries %d, answers %d; want 1, 3 (own, looped back), 0", r.stats.Searches.Load(), r.stats.QueriesReceived.Load(), r.stats.AnswersSent.Load())
	}
}

func waitTimers(t *testing.T, c *fakeClock, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.pending()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers pending, want %d", len(c.pending()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSearchNotFound(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := r.x.Search(t.Context(), SearchSpec{Name: "nowhere", MaxTTL: 3})
		done <- err
	}()
	var ttls []int
	for range 3 {
		ttls = append(ttls, r.out.next(t).ttl)
		waitTimers(t, r.clock, 1)
		r.clock.Advance(360 * time.Millisecond) // the longest step
	}
	if err := <-done; !errors.Is(err, ErrNotFound) {
		t.Fatalf("Search = %v, want ErrNotFound", err)
	}
	if !slices.Equal(ttls, []int{1, 2, 3}) {
		t.Errorf("TTLs %v, want [1 2 3]", ttls)
	}
}

func TestSearchByKeyIgnoresOtherHosts(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	want, other := seededIdentity(1), seededIdentity(2)
	key := [32]byte(want.Pub)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := r.x.Search(ctx, SearchSpec{Name: "r", Key: &key, MaxTTL: 1})
		done <- err
	}()
	m := r.out.next(t)
	if q, _ := wire.ParseQuery(m.b); !q.HasKey || q.HostKey != key {
		t.Fatalf("query %+v, want the host key", q)
	}
	r.x.HandlePacket(signTestAnnounce(t, other, testAnnounce("r", 1)), querier)
	select {
	case err := <-done:
		t.Fatalf("search ended with %v on another host's room", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Search = %v, want context.Canceled", err)
	}
}

// answeringRig is a daemon holding room "r" of host 1.
func answeringRig(t *testing.T) (*discoRig, []byte) {
	r := newDiscoRig(t, DiscoveryConfig{})
	ann := signTestAnnounce(t, seededIdentity(1), testAnnounce("r", 1))
	if err := r.dir.HandleAnnounce(ann, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return r, ann
}

func TestAnswerAfterDelay(t *testing.T) {
	r, ann := answeringRig(t)
	r.x.HandlePacket(queryPacket(t, "r", 4, 1), querier)
	r.x.HandlePacket(queryPacket(t, "other", 4, 2), querier)
	// Rand 0.5 and a query that crossed no router: a quarter of the way
	// from answerMin to answerMax.
	want := answerMin + (answerMax-answerMin)/4
	if got := r.clock.pending(); !slices.Equal(got, []time.Duration{want}) {
		t.Fatalf("answer timers %v, want one of %v", got, want)
	}
	r.clock.Advance(want - time.Millisecond)
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("answered before the delay: %+v", got)
	}
	r.clock.Advance(time.Millisecond)
	got := r.out.take()
	if len(got) != 1 || !slices.Equal(got[0].b, ann) || got[0].ttl != 4 || got[0].ifindex != 1 {
		t.Fatalf("sent %+v, want the announcement with TTL 4 on interface 1", got)
	}
	if r.stats.AnswersSent.Load() != 1 || r.stats.AnswerBytesSent.Load() != int64(len(ann)) {
		t.Errorf("answers %d, %d bytes", r.stats.AnswersSent.Load(), r.stats.AnswerBytesSent.Load())
	}

	// A query from a peer, by unicast, is answered by unicast; the delay is
	// longer for a query that crossed routers.
	r.clock.Advance(time.Second)
	r.x.HandlePacket(queryPacket(t, "r", 8, 3), peerSrc)
	r.clock.Advance(answerMax)
	if got := r.out.take(); len(got) != 1 || got[0].to != peerSrc.Addr {
		t.Fatalf("sent %+v, want the answer to %v", got, peerSrc.Addr)
	}
	far := querier
	far.TTL = 1 // sent with 8: crossed 7 routers
	r.clock.Advance(time.Second)
	r.x.HandlePacket(queryPacket(t, "r", 8, 4), far)
	want = answerMin + time.Duration((7.0/8*0.5+0.25)*float64(answerMax-answerMin))
	if got := r.clock.pending(); len(got) != 1 || got[0] != want {
		t.Fatalf("timers %v, want one of %v", got, want)
	}
}

func TestAnswerSuppressedByAnother(t *testing.T) {
	r, ann := answeringRig(t)
	r.x.HandlePacket(queryPacket(t, "r", 1, 1), querier)
	r.clock.Advance(10 * time.Millisecond)
	// Another daemon answers first.
	r.x.HandlePacket(ann, Source{Addr: netip.MustParseAddrPort("10.0.0.7:7701"), Multicast: true, IfIndex: 1})
	r.clock.Advance(answerMax)
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("sent %+v after another answer", got)
	}
	if r.stats.AnswersSuppressed.Load() != 1 {
		t.Errorf("answers_suppressed = %d, want 1", r.stats.AnswersSuppressed.Load())
	}
}

func TestAnswerOncePerSecond(t *testing.T) {
	r, _ := answeringRig(t)
	src := querier
	n := 0
	for i := range 40 {
		// Different sources, so only the answer rate holds them back.
		src.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 7701)
		r.x.HandlePacket(queryPacket(t, "r", 1, uint64(i)), src)
		r.clock.Advance(100 * time.Millisecond)
		n += len(r.out.take())
	}
	// 4 s: the first query answered at once, then one a second.
	if n != 4 {
		t.Fatalf("%d answers in 4 s, want 4", n)
	}
	// A query with a larger TTL reaches beyond the last answer: answered
	// within the second; a smaller one is not.
	r.clock.Advance(time.Second)
	r.x.HandlePacket(queryPacket(t, "r", 1, 100), src)
	r.clock.Advance(answerMax)
	src.Addr = netip.MustParseAddrPort("10.1.200.1:7701")
	r.x.HandlePacket(queryPacket(t, "r", 2, 101), src)
	r.clock.Advance(answerMax)
	src.Addr = netip.MustParseAddrPort("10.1.201.1:7701")
	r.x.HandlePacket(queryPacket(t, "r", 1, 102), src)
	r.clock.Advance(answerMax)
	got := r.out.take()
	if len(got) != 2 || got[0].ttl != 1 || got[1].ttl != 2 {
		t.Fatalf("sent %+v, want answers with TTL 1 then 2, not 1 again", got)
	}
}

// Queries are limited per source and in all, and the answers never weigh
// more than three times the queries.
func TestQueryLimitsAndBudget(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	// Many rooms, so the per-room answer gap does not hide the budget.
	var big int
	for i := range 300 {
		a := testAnnounce("r", 1)
		a.Room = "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		a.Addrs = a.Addrs[:1]
		for len(a.Addrs) < wire.MaxAddrs {
			a.Addrs = append(a.Addrs, netip.MustParseAddrPort("[fd00::1]:7702"))
		}
		pkt := signTestAnnounce(t, seededIdentity(uint64(i)), a)
		big = len(pkt)
		// Past the signature-check budget's burst.
		if err := r.dir.HandleAnnounce(pkt, r.clock.Now().Add(time.Duration(i)*10*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if big <= 2*wire.QueryLen {
		t.Fatalf("announcements of %d bytes do not test the budget", big)
	}
	r.clock.Advance(3 * time.Second)
	one := querier
	for i := range 100 {
		r.x.HandlePacket(queryPacket(t, "raa", 1, uint64(i)), one)
	}
	if got := r.stats.QueriesLimited.Load(); got != 100-queryBurst {
		t.Errorf("one source: %d of 100 queries limited, want %d", got, 100-queryBurst)
	}
	r.clock.Advance(answerMax)
	r.out.take()

	// 10,000 queries a second from spoofed sources, for 2 s, each for a
	// different room.
	r.stats.QueriesLimited.Store(0)
	var qbytes, abytes int
	for i := range 20000 {
		src := querier
		src.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 7701)
		name := "r" + string(rune('a'+i%26)) + string(rune('a'+(i/26)%11))
		b := queryPacket(t, name, 1, uint64(1000+i))
		qbytes += len(b)
		r.x.HandlePacket(b, src)
		if i%10 == 9 {
			r.clock.Advance(time.Millisecond)
			for _, s := range r.out.take() {
				abytes += len(s.b)
			}
		}
	}
	r.clock.Advance(answerMax)
	for _, s := range r.out.take() {
		abytes += len(s.b)
	}
	if abytes > 3*qbytes {
		t.Errorf("answered %d bytes to %d bytes of queries: more than 3 times", abytes, qbytes)
	}
	// The global rate: 100 a second (plus its burst) get through.
	if limited := r.stats.QueriesLimited.Load(); limited < 20000-2*queryGlobalRate-queryGlobalRate {
		t.Errorf("%d of 20000 queries limited; the global rate is %d/s", limited, queryGlobalRate)
	}
	accepted := r.stats.QueriesReceived.Load() - 100 - r.stats.QueriesLimited.Load()
	if got := r.stats.AnswerBytesSent.Load(); got > 3*wire.QueryLen*accepted+answerCredit {
		t.Errorf("answer bytes %d for %d accepted queries", got, accepted)
	}
	if r.stats.AnswersSent.Load() == 0 || r.stats.AnswersOverBudget.Load() == 0 {
		t.Errorf("answers sent %d, over budget %d: want both", r.stats.AnswersSent.Load(), r.stats.AnswersOverBudget.Load())
	}
	t.Logf("%d query bytes drew %d answer bytes; %d answers, %d over budget", qbytes, abytes, r.stats.AnswersSent.Load(), r.stats.AnswersOverBudget.Load())
}

func TestAnnounceRateLimit(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	pkt := signTestAnnounce(t, seededIdentity(1), testAnnounce("r", 1))
	for range announceBurst + 10 {
		r.x.HandlePacket(pkt, querier)
	}
	if got := r.stats.AnnounceLimited.Load(); got != 10 {
		t.Errorf("announce_limited = %d, want 10", got)
	}
	other := querier
	other.Addr = netip.MustParseAddrPort("10.0.0.10:7701")
	r.x.HandlePacket(pkt, other)
	if got := r.stats.AnnounceLimited.Load(); got != 10 {
		t.Errorf("another source was limited too: announce_limited = %d", got)
	}
}

func TestSourceLimiterBounded(t *testing.T) {
	l := newSourceLimiter(queryRate, queryBurst, discoSources)
	for i := range 100_000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), dirNow)
	}
	if n := len(l.buckets); n > discoSources {
		t.Fatalf("%d sources held, cap %d", n, discoSources)
	}
}

func TestRelay(t *testing.T) {
	peer := netip.MustParseAddrPort("10.9.0.1:7701")
	r := newDiscoRig(t, DiscoveryConfig{Relay: true, RelayHops: 2, Peers: []netip.AddrPort{peer}})
	a := testAnnounce("r", 1)
	a.Lifetime = 30
	ann := signTestAnnounce(t, seededIdentity(1), a)

	// Heard on interface 1: passed on to interface 2 and the peer, hop 1.
	r.x.HandlePacket(ann, querier)
	got := r.out.take()
	if len(got) != 2 || got[0].ifindex != 2 || got[1].to != peer {
		t.Fatalf("relayed %+v, want interface 2 and the peer", got)
	}
	rl, err := wire.ParseRelay(got[0].b)
	if err != nil || rl.Hops != 1 || !slices.Equal(rl.Announce, ann) {
		t.Fatalf("relayed packet %+v, %v; want hop 1 carrying the announcement", rl, err)
	}
	// The same (Q, R, T) again, from anywhere, is a duplicate until a
	// third of its lifetime passed.
	r.x.HandlePacket(got[0].b, Source{Addr: peer})
	if n := len(r.out.take()); n != 0 || r.stats.RelayDuplicates.Load() != 1 {
		t.Fatalf("duplicate relayed: %d sent, relay_duplicates %d", n, r.stats.RelayDuplicates.Load())
	}
	r.clock.Advance(10 * time.Second)
	r.x.HandlePacket(got[0].b, Source{Addr: peer})
	got = r.out.take()
	if len(got) != 2 || got[0].ifindex != 1 || got[1].ifindex != 2 {
		t.Fatalf("after 10 s, relayed %+v; want both interfaces and not back to the peer", got)
	}
	if rl, _ := wire.ParseRelay(got[0].b); rl.Hops != 2 {
		t.Fatalf("hops %d, want 2", rl.Hops)
	}
	// At the hop limit: filed, not passed on.
	a.Serial = 2
	ann2 := signTestAnnounce(t, seededIdentity(1), a)
	at, _ := wire.AppendRelay(nil, 2, ann2)
	r.x.HandlePacket(at, querier)
	if n := len(r.out.take()); n != 0 || r.stats.RelayHopLimit.Load() != 1 {
		t.Fatalf("at the hop limit: %d sent, relay_hop_limit %d", n, r.stats.RelayHopLimit.Load())
	}
	if kn, ok := r.dir.Get(a.HostKey, "r", r.clock.Now()); !ok || kn.Serial != 2 {
		t.Fatalf("relayed announcement not filed: %+v", kn)
	}
	// Forged: dropped, not relayed.
	forged := signTestAnnounce(t, seededIdentity(1), testAnnounce("r", 3))
	forged[len(forged)-1] ^= 1
	r.x.HandlePacket(forged, querier)
	if n := len(r.out.take()); n != 0 || r.stats.AnnounceBadSig.Load() != 1 {
		t.Fatalf("forged: %d sent, bad sig %d", n, r.stats.AnnounceBadSig.Load())
	}
	r.stats.RelayedSent.Load()
	if got := r.stats.RelayedSent.Load(); got != 2 {
		t.Errorf("relayed_sent = %d, want 2", got)
	}
}

func TestNoRelayByDefault(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{Peers: []netip.AddrPort{peerSrc.Addr}})
	r.x.HandlePacket(signTestAnnounce(t, seededIdentity(1), testAnnounce("r", 1)), querier)
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("relayed %+v with relay off", got)
	}
}

func TestPeersBounded(t *testing.T) {
	r := newDiscoRig(t, DiscoveryConfig{})
	var peers []netip.AddrPort
	for i := range MaxPeers + 1 {
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 7701))
	}
	if err := r.x.SetPeers(peers); !errors.Is(err, ErrTooManyPeers) {
		t.Fatalf("SetPeers(%d) = %v, want ErrTooManyPeers", len(peers), err)
	}
	if err := r.x.SetPeers(append(peers[:2:2], peers[0])); err != nil || len(r.x.Peers()) != 2 {
		t.Fatalf("SetPeers with a duplicate: %v, %v", err, r.x.Peers())
	}
}

// benchQuery measures the query path of a daemon holding 1000 rooms:
// parse, limits, lookup and, when the limits let it through, scheduling
// the answer.
func benchQuery(b *testing.B, unlimited bool) {
	stats := new(Stats)
	dir := NewDirectory(stats, nil)
	now := time.Now()
	for i := range 1000 {
		a := testAnnounce("r", 1)
		a.Room = "room" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		// Spaced out past the signature-check budget.
		if err := dir.HandleAnnounce(signTestAnnounce(b, seededIdentity(uint64(i)), a), now.Add(time.Duration(i-1000)*10*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
	}
	x, _ := NewDiscovery(DiscoveryConfig{Directory: dir, Sender: newFakeSender(1), Stats: stats, Clock: realClock{}})
	defer x.Close()
	if unlimited {
		x.qLimit = newSourceLimiter(1e12, 1e12, discoSources)
		x.qGlobal = bucket{rate: 1e12, burst: 1e12}
	}
	q := queryPacket(b, "roomabb", 2, 1)
	src := querier
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		src.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)}), 7701)
		x.HandlePacket(q, src)
	}
}

// BenchmarkQueryFlood: queries from ever new sources, nearly all over the
// global rate.
func BenchmarkQueryFlood(b *testing.B) { benchQuery(b, false) }

// BenchmarkQueryAnswered: every query gets through the limits and finds
// its room (answers are then held to one a second).
func BenchmarkQueryAnswered(b *testing.B) { benchQuery(b, true) }
