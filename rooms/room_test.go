package rooms

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"meshd/internal/leaktest"
	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

var (
	testPrefix = netip.MustParsePrefix("239.255.78.0/24")
	discard    = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func newTestIdentity(t testing.TB) *Identity {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// recorder collects deliveries and lets a test wait for a count.
type recorder struct {
	mu   sync.Mutex
	got  []Delivery
	cond chan struct{}
}

func newRecorder() *recorder { return &recorder{cond: make(chan struct{}, 1)} }

func (r *recorder) deliver(d Delivery) {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	select {
	case r.cond <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// waitFor waits until ok holds for the deliveries so far.
func (r *recorder) waitFor(t *testing.T, what string, ok func([]Delivery) bool) []Delivery {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		got := r.snapshot()
		if ok(got) {
			return got
		}
		select {
		case <-r.cond:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d deliveries", what, len(got))
		}
	}
}

// testRoom is a host on an in-memory network with a real loopback TCP
// listener for joins.
type testRoom struct {
	t     *testing.T
	net   *memnet.Network
	host  *Host
	seq   *Sequencer
	rec   *recorder
	stats *Stats
	kn    Known
}

func newTestRoom(t *testing.T, n *memnet.Network, name string) *testRoom {
	t.Helper()
	return newTestRoomHistory(t, n, name, 0)
}

// newTestRoomHistory makes a room whose host keeps history packets for
// repair (0: the default).
func newTestRoomHistory(t *testing.T, n *memnet.Network, name string, history int) *testRoom {
	t.Helper()
	// Registered first, so it runs after every other cleanup: once the
	// host and members are closed, none of their goroutines may remain.
	t.Cleanup(func() { leaktest.Check(t, "meshd/rooms.") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := n.Listen(netip.MustParseAddr("10.0.0.1"), 7703)
	t.Cleanup(func() { conn.Close() })
	tr := &testRoom{t: t, net: n, rec: newRecorder(), stats: new(Stats)}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	tr.host = NewHost(HostConfig{
		Identity:   newTestIdentity(t),
		Boot:       1,
		Sender:     conn,
		DataGroups: testPrefix,
		DataPort:   7703,
		Nick:       "host",
		Lifetime:   30 * time.Second,
		Addrs:      func() []netip.AddrPort { return []netip.AddrPort{addr} },
		Deliver:    tr.rec.deliver,
		Stats:      tr.stats,
		Logger:     discard,
		History:    history,
	})
	if tr.seq, err = tr.host.Open(name); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.host.Serve(ctx, ln) }()
	// The daemon's timer sends heartbeats after a second of silence; the
	// test sends them faster, so a lost tail is noticed quickly.
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				tr.host.Tick(now.Add(Heartbeat))
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-tickDone
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	dir := NewDirectory(new(Stats), nil)
	for _, pkt := range tr.host.Announcements() {
		if err := dir.HandleAnnounce(pkt, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if tr.kn, err = dir.Resolve(name); err != nil {
		t.Fatal(err)
	}
	return tr
}

// testMember is a member daemon: a memnet socket whose read loop feeds the
// Member, as the daemon's data loop does.
type testMember struct {
	m     *Member
	rec   *recorder
	stats *Stats

	gapMu sync.Mutex
	gaps  [][2]uint64
}

func (tm *testMember) onGap(_ string, from, through uint64) {
	tm.gapMu.Lock()
	tm.gaps = append(tm.gaps, [2]uint64{from, through})
	tm.gapMu.Unlock()
}

func (tr *testRoom) join(addr, nick string, kn Known) (*testMember, error) {
	conn := tr.net.Listen(netip.MustParseAddr(addr), 7703)
	tm := &testMember{rec: newRecorder(), stats: new(Stats)}
	var (
		mu sync.Mutex
		m  *Member
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 2048)
		for {
			n, _, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			mm := m
			mu.Unlock()
			if mm != nil {
				mm.HandlePacket(buf[:n])
			}
		}
	}()
	cfg := MemberConfig{
		Identity: newTestIdentity(tr.t),
		Stats:    tm.stats,
		Logger:   discard,
		Deliver:  tm.rec.deliver,
		JoinData: conn.JoinGroup,
		OnGap:    tm.onGap,
		Resolve:  func(string) (Known, error) { return kn, nil },
	}
	var err error
	tm.m, err = Join(context.Background(), cfg, kn, nick)
	if err != nil {
		conn.Close()
		<-readDone
		return nil, err
	}
	mu.Lock()
	m = tm.m
	mu.Unlock()
	tr.t.Cleanup(func() {
		tm.m.Close()
		conn.Close()
		<-readDone
	})
	return tm, nil
}

func TestRoomOrderUnderLoss(t *testing.T) {
	n := memnet.New(42)
	n.Loss, n.Duplicate, n.Reorder = 0.2, 0.05, 0.1
	tr := newTestRoom(t, n, "general")
	var members []*testMember
	for i, addr := range []string{"10.0.0.2", "10.0.0.3"} {
		tm, err := tr.join(addr, fmt.Sprintf("m%d", i), tr.kn)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, tm)
	}

	const perSender = 100
	ctx := context.Background()
	for i := range perSender {
		if _, err := tr.seq.Say(fmt.Sprintf("host %d", i)); err != nil {
			t.Fatal(err)
		}
		for j, tm := range members {
			if _, err := tm.m.Say(ctx, fmt.Sprintf("m%d %d", j, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := tr.seq.LastSeq()
	want := tr.rec.snapshot()
	for i, tm := range members {
		got := tm.rec.waitFor(t, fmt.Sprintf("member %d to reach seq %d", i, last), func(d []Delivery) bool {
			return len(d) > 0 && d[len(d)-1].Seq == last
		})
		// A member sees the room from its own join on, in the host's order,
		// with no gap and no duplicate.
		first := got[0].Seq
		if got[0].Kind != wire.KindJoin || got[0].Nick != fmt.Sprintf("m%d", i) {
			t.Errorf("member %d: first delivery = %+v, want its own join", i, got[0])
		}
		for k, d := range got {
			if d.Seq != first+uint64(k) {
				t.Fatalf("member %d: delivery %d has seq %d, want %d", i, k, d.Seq, first+uint64(k))
			}
			h := want[d.Seq-1]
			if h.Seq != d.Seq || h.Text != d.Text || h.Nick != d.Nick || h.Kind != d.Kind {
				t.Fatalf("member %d: seq %d = %+v, host has %+v", i, d.Seq, d, h)
			}
		}
		if tm.stats.DataFetched.Load() == 0 {
			t.Errorf("member %d fetched nothing at 20%% loss: repair path not exercised", i)
		}
	}
}

func TestJoinRefusals(t *testing.T) {
	n := memnet.New(1)
	tr := newTestRoom(t, n, "general")
	if _, err := tr.join("10.0.0.2", "alice", tr.kn); err != nil {
		t.Fatal(err)
	}
	_, err := tr.join("10.0.0.3", "alice", tr.kn)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("second alice: err = %v, want ErrRefused", err)
	}
	_, err = tr.join("10.0.0.4", "host", tr.kn)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("nick of the host: err = %v, want ErrRefused", err)
	}

	// The right address, announced under another key: the host's
	// certificate does not match, and the join must say so.
	forged := tr.kn
	other := newTestIdentity(t)
	copy(forged.HostKey[:], other.Pub)
	_, err = tr.join("10.0.0.5", "bob", forged)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("join with wrong Q: err = %v, want ErrHostKeyMismatch", err)
	}
}

func TestPartIsSequenced(t *testing.T) {
	n := memnet.New(2)
	tr := newTestRoom(t, n, "general")
	a, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.join("10.0.0.3", "bob", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(a.m.Members()); got != 2 {
		// alice saw the host in the welcome and herself join; bob's join
		// may still be in flight.
		a.rec.waitFor(t, "bob's join at alice", func(d []Delivery) bool {
			for _, x := range d {
				if x.Kind == wire.KindJoin && x.Nick == "bob" {
					return true
				}
			}
			return false
		})
	}
	b.m.Close()
	got := a.rec.waitFor(t, "bob's part at alice", func(d []Delivery) bool {
		return len(d) > 0 && d[len(d)-1].Kind == wire.KindPart
	})
	if p := got[len(got)-1]; p.Nick != "bob" {
		t.Fatalf("part = %+v, want bob's", p)
	}
	for _, mi := range a.m.Members() {
		if mi.Nick == "bob" {
			t.Fatal("bob still listed after his part")
		}
	}
}

func TestOutsiderCannotRead(t *testing.T) {
	n := memnet.New(3)
	tr := newTestRoom(t, n, "general")
	if _, err := tr.join("10.0.0.2", "alice", tr.kn); err != nil {
		t.Fatal(err)
	}
	// An outsider that learned the room id and group from the
	// announcement, but has no key, gets nowhere with the packets.
	outsider := n.Listen(netip.MustParseAddr("10.0.0.9"), 7703)
	defer outsider.Close()
	if err := outsider.JoinGroup(tr.seq.Group().Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.seq.Say("secret"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	nb, _, _, err := outsider.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	guess, err := newEpochKey(Epoch(1, 0), [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openBatch(nil, guess, tr.kn.Key(), buf[:nb], nil); !errors.Is(err, errAuth) {
		t.Fatalf("open without the key: err = %v, want errAuth", err)
	}
}

// A member cut off for longer than the host's history learns, when it
// comes back, which records are lost, delivers everything after them, and
// tells its user of the gap instead of asking for it forever.
func TestGapBeyondHistoryIsDeclared(t *testing.T) {
	n := memnet.New(4)
	tr := newTestRoomHistory(t, n, "general", 8)
	const addr = "10.0.0.2"
	tm, err := tr.join(addr, "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	joinSeq := tm.rec.waitFor(t, "alice's join", func(d []Delivery) bool { return len(d) == 1 })[0].Seq

	n.SetLoss(netip.MustParseAddr(addr), 1)
	const lines = 20
	for i := range lines {
		if _, err := tr.seq.Say(fmt.Sprintf("line %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	n.SetLoss(netip.MustParseAddr(addr), 0)

	last := tr.seq.LastSeq()
	got := tm.rec.waitFor(t, "the last line", func(d []Delivery) bool { return d[len(d)-1].Seq == last })
	// The host holds the last 8 packets; the 12 before them are gone.
	firstHeld := last - 7
	tm.gapMu.Lock()
	gaps := tm.gaps
	tm.gapMu.Unlock()
	if len(gaps) != 1 || gaps[0] != [2]uint64{joinSeq + 1, firstHeld - 1} {
		t.Fatalf("gaps = %v, want [[%d %d]]", gaps, joinSeq+1, firstHeld-1)
	}
	if len(got) != 1+8 || got[1].Seq != firstHeld {
		t.Fatalf("delivered %d records starting after the join at %d, want 8 starting at %d", len(got)-1, got[1].Seq, firstHeld)
	}
	if lost := tm.stats.DataLost.Load(); lost != int64(firstHeld-joinSeq-1) {
		t.Errorf("data_lost = %d, want %d", lost, firstHeld-joinSeq-1)
	}
}
