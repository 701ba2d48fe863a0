package rooms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	store *memStore
	kn    Known
	// dial, if set, opens members' connections to the host.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newTestRoom(t *testing.T, n *memnet.Network, name string) *testRoom {
	t.Helper()
	return newTestRoomHistory(t, n, name, 0)
}

// memStore is an in-memory Store that keeps the newest keep batches.
type memStore struct {
	mu       sync.Mutex
	keep     int
	batches  []storedBatch
	reserved uint64
	start    uint64 // where the room resumes, if not after the log
	access   []byte // what SaveAccess saved
	saves    int
	releases int // Release calls
}

type storedBatch struct {
	first uint64
	count int
	batch []byte
}

func (s *memStore) Append(first uint64, count int, batch []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, storedBatch{first, count, append([]byte(nil), batch...)})
	if s.keep > 0 && len(s.batches) > s.keep {
		s.batches = s.batches[len(s.batches)-s.keep:]
	}
	return nil
}

func (s *memStore) Read(from uint64, yield func(uint64, int, []byte) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		if b.first+uint64(b.count) > from && !yield(b.first, b.count, b.batch) {
			return
		}
	}
}

func (s *memStore) Oldest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return 0
	}
	return s.batches[0].first
}

func (s *memStore) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return 0
	}
	b := s.batches[len(s.batches)-1]
	return b.first + uint64(b.count)
}

func (s *memStore) Start() uint64 {
	if s.start > 0 {
		return s.start
	}
	return max(s.Next(), 1)
}

func (s *memStore) Reserve(hw uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved = hw
	return nil
}

func (s *memStore) LoadAccess() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access, nil
}

func (s *memStore) SaveAccess(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = append([]byte(nil), b...)
	s.saves++
	return nil
}

func (s *memStore) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releases++
}

func (s *memStore) Close() error { return nil }

// newTestRoomHistory makes a room whose host keeps history batches for
// repair (0: all).
func newTestRoomHistory(t *testing.T, n *memnet.Network, name string, history int) *testRoom {
	t.Helper()
	return newTestRoomStore(t, n, name, &memStore{keep: history})
}

// newTestRoomStore makes a room whose host resumes from store.
func newTestRoomStore(t *testing.T, n *memnet.Network, name string, store *memStore) *testRoom {
	t.Helper()
	return newTestRoomAccess(t, n, name, store, RoomAccess{})
}

// newTestRoomAccess makes a room that admits whom access says.
func newTestRoomAccess(t *testing.T, n *memnet.Network, name string, store *memStore, access RoomAccess) *testRoom {
	t.Helper()
	// Registered first, so it runs after every other cleanup: once the
	// host and members are closed, none of their goroutines (all run
	// methods) may remain.
	t.Cleanup(func() { leaktest.Check(t, "meshd/rooms.(*", "meshd/rooms/poller.") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := n.Listen(netip.MustParseAddr("10.0.0.1"), 7703)
	t.Cleanup(func() { conn.Close() })
	tr := &testRoom{t: t, net: n, rec: newRecorder(), stats: new(Stats), store: store}
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
		OpenStore: func(string, [wire.RoomIDLen]byte) (Store, error) {
			return tr.store, nil
		},
	})
	if tr.seq, err = tr.host.Open(name, access); err != nil {
		t.Fatal(err)
	}
	// The host hears NACKs on the room's group, as the daemon's data
	// loop does.
	if err := conn.JoinGroup(tr.seq.Group().Addr()); err != nil {
		t.Fatal(err)
	}
	hostRead := make(chan struct{})
	go func() {
		defer close(hostRead)
		buf := make([]byte, 2048)
		for {
			nb, _, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if typ, _ := wire.PacketType(buf[:nb]); typ == wire.TypeNack {
				tr.seq.HandleNack(buf[:nb])
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-hostRead; tr.host.Close() })
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
	return tr.joinFrom(addr, nick, kn, 0)
}

// joinFrom joins as a member returning to the room at sequence resume.
func (tr *testRoom) joinFrom(addr, nick string, kn Known, resume uint64) (*testMember, error) {
	return tr.joinAs(addr, nick, kn, resume, newTestIdentity(tr.t), Credential{})
}

// joinAs joins as the member with identity id, showing cred.
func (tr *testRoom) joinAs(addr, nick string, kn Known, resume uint64, id *Identity, cred Credential) (*testMember, error) {
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
		Identity: id,
		Stats:    tm.stats,
		Logger:   discard,
		Deliver:  tm.rec.deliver,
		JoinData: conn.JoinGroup,
		Sender:   conn,
		OnGap:    tm.onGap,
		Resolve:  func(string) (Known, error) { return kn, nil },
		Dial:     tr.dial,
	}
	var err error
	tm.m, err = Join(context.Background(), cfg, kn, nick, resume, cred)
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

// Property: whatever the seeded network loses, duplicates and reorders,
// every member delivers every record from its join on, once, in the
// host's order.
func TestRoomOrderUnderLoss(t *testing.T) {
	for _, tc := range []struct {
		seed               uint64
		loss, dup, reorder float64
	}{
		{42, 0.2, 0.05, 0.1},
		{1, 0.05, 0.1, 0.3},
		{2, 0.4, 0.02, 0.05},
		{3, 0.3, 0.2, 0.2},
	} {
		t.Run(fmt.Sprintf("seed%d-loss%.2f", tc.seed, tc.loss), func(t *testing.T) {
			n := memnet.New(tc.seed)
			n.Loss, n.Duplicate, n.Reorder = tc.loss, tc.dup, tc.reorder
			testRoomOrder(t, n)
		})
	}
}

func testRoomOrder(t *testing.T, n *memnet.Network) {
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
	var nacks, repaired int64
	defer func() {
		// A member may get all its repairs from NACKs it overheard, so the
		// repair path is checked over the room.
		if nacks == 0 || repaired == 0 {
			t.Errorf("at %.0f%% loss: %d NACKs sent, %d blocks rebuilt from parity; the repair path was not exercised", 100*n.Loss, nacks, repaired)
		}
	}()
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
		nacks += tm.stats.NacksSent.Load()
		repaired += tm.stats.BlocksRepaired.Load()
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

	// The right address, announced under another key: the host proves
	// its own key, not the announced one, and the join must say so,
	// naming both.
	forged := tr.kn
	other := newTestIdentity(t)
	copy(forged.HostKey[:], other.Pub)
	_, err = tr.join("10.0.0.5", "bob", forged)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("join with wrong Q: err = %v, want ErrHostKeyMismatch", err)
	}
	want := fmt.Sprintf("host key mismatch: room announced by %s, answered by %s", other.Fingerprint(), Fingerprint(tr.kn.Key()))
	if !strings.Contains(err.Error(), want) {
		t.Errorf("join with wrong Q: err = %q, want it to say %q", err, want)
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
	for {
		nb, _, _, err := outsider.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, err := parseSealed(buf[:nb])
		if err != nil || h.Type != wire.TypeShard {
			continue
		}
		guess, err := newEpochKey(uint64(h.Epoch), [32]byte{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openSealed(nil, new(nonceBuf), guess, &h, buf[:nb]); !errors.Is(err, errAuth) {
			t.Fatalf("open without the key: err = %v, want errAuth", err)
		}
		if bytes.Contains(buf[:nb], []byte("secret")) {
			t.Fatal("the shard carries the line in clear")
		}
		return
	}
}

// A member that returns after the host's log let go of what it missed
// learns which records are lost, gets everything after them, and tells its
// user of the gap instead of asking for it forever.
func TestGapBeyondHistoryIsDeclared(t *testing.T) {
	n := memnet.New(4)
	const keep = 8
	tr := newTestRoomHistory(t, n, "general", keep)
	const lines = 20
	for i := range lines {
		if _, err := tr.seq.Say(fmt.Sprintf("line %d", i)); err != nil {
			t.Fatal(err)
		}
		tr.seq.flush() // one batch per line, so that the log drops some
	}
	tm, err := tr.joinFrom("10.0.0.2", "alice", tr.kn, 1)
	if err != nil {
		t.Fatal(err)
	}
	last := tr.seq.LastSeq() // alice's join
	got := tm.rec.waitFor(t, "alice's join", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq == last })
	oldest := tr.store.Oldest() // the log as it stood when alice returned
	if oldest <= 1 {
		t.Fatalf("store kept everything (oldest %d): the test needs it to drop some", oldest)
	}
	tm.gapMu.Lock()
	gaps := tm.gaps
	tm.gapMu.Unlock()
	if len(gaps) != 1 || gaps[0] != [2]uint64{1, oldest - 1} {
		t.Fatalf("gaps = %v, want [[1 %d]]", gaps, oldest-1)
	}
	if got[0].Seq != oldest || uint64(len(got)) != last-oldest+1 {
		t.Fatalf("delivered %d records from %d, want %d from %d", len(got), got[0].Seq, last-oldest+1, oldest)
	}
	if lost := tm.stats.DataLost.Load(); lost != int64(oldest-1) {
		t.Errorf("data_lost = %d, want %d", lost, oldest-1)
	}
}

// Every counter is reported: a counter missing from Snapshot is invisible
// to operators.
func TestStatsSnapshotNamesEveryCounter(t *testing.T) {
	var s Stats
	if got, want := len(s.Snapshot()), reflect.TypeFor[Stats]().NumField(); got != want {
		t.Fatalf("Snapshot has %d counters, Stats has %d fields", got, want)
	}
}

// When members report heavy loss the host sends all of a block's parity at
// once; a repair asked for after that makes more rather than running off
// the end of the block.
func TestRepairAfterAllParitySent(t *testing.T) {
	n := memnet.New(5)
	tr := newTestRoom(t, n, "general")
	tm, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	tr.seq.mu.Lock()
	tr.seq.loss = 0.9
	tr.seq.mu.Unlock()
	n.SetLoss(netip.MustParseAddr("10.0.0.2"), 1)
	if _, err := tr.seq.Say("into the void"); err != nil {
		t.Fatal(err)
	}
	tr.seq.flush()
	tr.seq.mu.Lock()
	sb := tr.seq.blocks[tr.seq.block%sentBlocks]
	if sb.sent != len(sb.shards) {
		t.Fatalf("sent %d of %d shards at first, want all of them", sb.sent, len(sb.shards))
	}
	tr.seq.askLocked(sb.no, sb.k)
	tr.seq.mu.Unlock()
	tr.seq.repair()
	waitWritten(t, tr.seq)
	n.SetLoss(netip.MustParseAddr("10.0.0.2"), 0)
	last := tr.seq.LastSeq()
	tm.rec.waitFor(t, "the line", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq == last })
}

// A line of the longest allowed length spans many shards and arrives
// whole, even at 20 % loss; a longer one is refused with the limit.
func TestLongLine(t *testing.T) {
	n := memnet.New(6)
	n.Loss = 0.2
	tr := newTestRoom(t, n, "general")
	tm, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("0123456789abcdef", wire.MaxText/16)
	seq, err := tm.m.Say(context.Background(), long)
	if err != nil {
		t.Fatal(err)
	}
	got := tm.rec.waitFor(t, "the long line", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= seq })
	if line := got[len(got)-1]; line.Seq != seq || line.Text != long {
		t.Fatalf("delivered #%d of %d bytes, want #%d of %d bytes, intact", line.Seq, len(line.Text), seq, len(long))
	}
	_, err = tm.m.Say(context.Background(), long+"!")
	if err == nil || !strings.Contains(err.Error(), "the limit is 16384 bytes") {
		t.Fatalf("say of %d bytes: err = %v, want the limit stated", len(long)+1, err)
	}
}

// After a reboot that lost the log's tail, the host resumes above its
// reservation; a member returning inside the lost range is told of the
// gap, not left asking for it.
func TestRebootHoleIsDeclared(t *testing.T) {
	store := &memStore{start: 1030}
	for first := uint64(1); first <= 5; first++ {
		store.Append(first, 1, []byte("batch that the log kept"))
	}
	tr := newTestRoomStore(t, memnet.New(7), "general", store)
	tm, err := tr.joinFrom("10.0.0.2", "alice", tr.kn, 6)
	if err != nil {
		t.Fatal(err)
	}
	got := tm.rec.waitFor(t, "alice's join", func(d []Delivery) bool { return len(d) > 0 })
	if got[0].Seq != 1030 || got[0].Kind != wire.KindJoin {
		t.Fatalf("first delivery = #%d kind %d, want the join at #1030", got[0].Seq, got[0].Kind)
	}
	tm.gapMu.Lock()
	defer tm.gapMu.Unlock()
	if len(tm.gaps) != 1 || tm.gaps[0] != [2]uint64{6, 1029} {
		t.Fatalf("gaps = %v, want [[6 1029]]", tm.gaps)
	}
}

// A member saying more than the host's member rate is told so, with the
// rate; what it said before is not lost.
func TestMemberRate(t *testing.T) {
	tr := newTestRoom(t, memnet.New(8), "general")
	tr.host.cfg.MemberRate = 2 // bursts of 4
	tm, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var said int
	for i := range 10 {
		_, err := tm.m.Say(ctx, fmt.Sprintf("line %d", i))
		if err != nil {
			if !strings.Contains(err.Error(), "(2 lines a second)") {
				t.Fatalf("say %d: err = %v, want the rate stated", i, err)
			}
			break
		}
		said++
	}
	if said != 4 {
		t.Errorf("%d lines accepted at once, want the burst of 4", said)
	}
	if n := tr.stats.SaysLimited.Load(); n != 1 {
		t.Errorf("says_limited = %d, want 1", n)
	}
}

// A kicked member's session ends, it cannot rejoin, and though its socket
// still receives the room's packets it opens none sent after the kick; the
// others lose nothing.
func TestKickRotatesKey(t *testing.T) {
	n := memnet.New(9)
	tr := newTestRoom(t, n, "general")
	alice, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tr.join("10.0.0.3", "bob", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := alice.m.Say(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	before := tr.seq.LastSeq()
	bob.rec.waitFor(t, "the line before the kick", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq == before })

	if err := tr.seq.Kick("nobody", false); !errors.Is(err, ErrNoSuchMember) {
		t.Fatalf("Kick(nobody) = %v, want ErrNoSuchMember", err)
	}
	if err := tr.seq.Kick("bob", false); err != nil {
		t.Fatal(err)
	}
	partSeq := tr.seq.LastSeq()
	delivered := bob.stats.DataDelivered.Load()
	for i := range 5 {
		if _, err := tr.seq.Say(fmt.Sprintf("after %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	last := tr.seq.LastSeq()
	alice.rec.waitFor(t, "the lines after the kick", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq == last })
	waitUntil(t, "bob to drop packets of the new epoch", func() bool { return bob.stats.DataBadEpoch.Load() > 0 })
	waitUntil(t, "bob's rejoin to be refused", func() bool { return bob.m.State() == StateRefused })
	if got := bob.stats.DataDelivered.Load(); got > delivered+1 {
		t.Errorf("bob delivered %d records after the kick, want at most his own part (#%d)", got-delivered, partSeq)
	}
	for _, d := range bob.rec.snapshot() {
		if d.Seq > partSeq {
			t.Errorf("bob delivered #%d %q, said after the kick", d.Seq, d.Text)
		}
	}
}

// flipConn flips one bit of the first write after it is armed: a record
// changed on the wire.
type flipConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c flipConn) Write(p []byte) (int, error) {
	if c.armed.CompareAndSwap(true, false) {
		p = bytes.Clone(p)
		p[len(p)-1] ^= 1
	}
	return c.Conn.Write(p)
}

// A session record changed on the wire is counted at the host, ends the
// session, and the member reconnects and goes on.
func TestTamperedRecordEndsSession(t *testing.T) {
	tr := newTestRoom(t, memnet.New(10), "general")
	var armed atomic.Bool
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return flipConn{Conn: c, armed: &armed}, nil
	}
	alice, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if _, err := alice.m.Say(context.Background(), "changed on the way"); err == nil {
		t.Fatal("a line whose record was changed on the wire was accepted")
	}
	if n := tr.stats.SessionsTampered.Load(); n != 1 {
		t.Errorf("host's sessions_tampered = %d, want 1", n)
	}
	waitUntil(t, "alice to reconnect", func() bool { return alice.m.State() == StateConnected })
	seq, err := alice.m.Say(context.Background(), "intact")
	if err != nil {
		t.Fatalf("say after reconnecting: %v", err)
	}
	alice.rec.waitFor(t, "the intact line", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq == seq })
	for _, d := range alice.rec.snapshot() {
		if d.Text == "changed on the way" {
			t.Error("the changed line was delivered")
		}
	}
}

// waitUntil polls cond, for state that no event announces.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSayLinesStayTogether: the hosting user's lines said at once get
// consecutive sequence numbers while a member says lines of its own, and
// reach the member in order; a paste with an invalid line sends nothing;
// a member's paste arrives in order.
func TestSayLinesStayTogether(t *testing.T) {
	n := memnet.New(7)
	tr := newTestRoom(t, n, "general")
	tm, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chatter := make(chan error, 1)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := tm.m.Say(ctx, fmt.Sprintf("alice %d", i)); err != nil && ctx.Err() == nil {
				chatter <- err
				return
			}
		}
		chatter <- nil
	}()
	paste := make([]string, 100)
	for i := range paste {
		paste[i] = fmt.Sprintf("paste %d", i)
	}
	first, last, err := tr.seq.SayLines(paste)
	if err != nil || last-first+1 != uint64(len(paste)) {
		t.Fatalf("SayLines = #%d to #%d, %v; want %d consecutive numbers", first, last, err, len(paste))
	}
	got := tm.rec.waitFor(t, "the paste", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= last })
	for _, d := range got {
		if d.Seq >= first && d.Seq <= last && d.Text != paste[d.Seq-first] {
			t.Fatalf("#%d is %q, want %q: the paste was split", d.Seq, d.Text, paste[d.Seq-first])
		}
	}
	cancel()
	if err := <-chatter; err != nil {
		t.Fatal(err)
	}

	before := tr.seq.LastSeq()
	if _, _, err := tr.seq.SayLines([]string{"fine", "bad\x00line"}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("SayLines with an invalid second line: %v, want an error naming line 2", err)
	}
	if after := tr.seq.LastSeq(); after != before {
		t.Errorf("a refused paste sequenced #%d to #%d", before+1, after)
	}

	first, last, err = tm.m.SayLines(context.Background(), []string{"m1", "m2", "m3"})
	if err != nil || last < first+2 {
		t.Fatalf("member SayLines = #%d to #%d, %v", first, last, err)
	}
	got = tr.rec.waitFor(t, "the member's paste", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= last })
	var texts []string
	for _, d := range got {
		if d.Seq >= first && d.Seq <= last {
			texts = append(texts, d.Text)
		}
	}
	if !slices.Equal(texts, []string{"m1", "m2", "m3"}) {
		t.Errorf("the host delivered %q for the member's paste, want m1 m2 m3 in order", texts)
	}
}
