package rooms

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// readUntil reads rs's frames until done takes one; what means what
// done waited for, for the failure.
func (rs *rawSession) readUntil(t *testing.T, what string, done func(wire.Frame) bool) {
	t.Helper()
	var buf []byte
	for {
		rs.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, b, err := wire.ReadFrame(rs.conn, buf)
		buf = b
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done(f) {
			return
		}
	}
}

// streamAnswer reads rs's frames until the host's answer to a stream
// request, and returns it.
func (rs *rawSession) streamAnswer(t *testing.T) *wire.Stream {
	t.Helper()
	var answer *wire.Stream
	rs.readUntil(t, "no answer to the stream request", func(f wire.Frame) bool {
		answer, _ = f.(*wire.Stream)
		return answer != nil
	})
	return answer
}

// nextBatch reads rs's frames until a Batch frame holding seq.
func (rs *rawSession) nextBatch(t *testing.T, tr *testRoom, seq uint64) {
	t.Helper()
	rs.readUntil(t, fmt.Sprintf("#%d did not come over the session", seq), func(f wire.Frame) bool {
		bf, ok := f.(*wire.BatchFrame)
		if !ok {
			return false
		}
		bt, err := verifyBatch(tr.kn.Key(), batchOpts(rs.welcome.Room), bf.Batch, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return bt.First <= seq && seq < bt.First+uint64(len(bt.Records))
	})
}

// streamingOf tells whether the host streams to the member with session rs.
func streamingOf(tr *testRoom, rs *rawSession) bool {
	tr.seq.mu.Lock()
	defer tr.seq.mu.Unlock()
	for _, m := range tr.seq.members {
		if m.nackSession == rs.welcome.Session {
			return m.streaming
		}
	}
	return false
}

// reportedLosses waits until the host holds a loss report from each of
// the n members.
func reportedLosses(t *testing.T, tr *testRoom, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d loss reports", n), func() bool {
		tr.seq.mu.Lock()
		defer tr.seq.mu.Unlock()
		got := 0
		for _, m := range tr.seq.members {
			if m.reported {
				got++
			}
		}
		return got == n
	})
}

// TestStreamForLoss: the host grants a member's request for the stream
// for loss only when that member loses clearly more than the rest of the
// room (its own link); when the room loses as much, it refuses, and the
// member stays on multicast. A request for silence is always granted.
func TestStreamForLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		others []uint16 // the other members' loss reports, thousandths
		asker  uint16
		grant  bool
	}{
		{"room shares the loss", []uint16{550, 600, 580, 620, 570}, 600, false},
		{"most of the room shares it", []uint16{40, 500, 560, 520, 610}, 700, false},
		{"lone lossy member", []uint16{30, 60, 20, 50, 0}, 600, true},
		{"lossy beside a few lossy", []uint16{30, 60, 20, 600, 650}, 700, true},
		{"no one to compare with", nil, 900, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRoom(t, memnet.New(11), "general")
			var others []*rawSession
			for i, loss := range tc.others {
				rs := dialRaw(t, tr, fmt.Sprintf("m%d", i))
				rs.write(t, &wire.Ack{Seq: rs.welcome.Next - 1, Loss: loss})
				others = append(others, rs)
			}
			asker := dialRaw(t, tr, "asker")
			asker.write(t, &wire.Ack{Seq: asker.welcome.Next - 1, Loss: tc.asker})
			reportedLosses(t, tr, len(others)+1)

			asker.write(t, &wire.Stream{On: true, Lossy: true})
			if got := asker.streamAnswer(t); got.On != tc.grant {
				t.Fatalf("the host answered %+v to a request for loss, want On=%v", got, tc.grant)
			}
			if got := streamingOf(tr, asker); got != tc.grant {
				t.Fatalf("the host streams to the member: %v, want %v", got, tc.grant)
			}
			if !tc.grant {
				// Silence: multicast does not reach the member at all.
				asker.write(t, &wire.Stream{On: true})
				if got := asker.streamAnswer(t); !got.On {
					t.Fatalf("the host answered %+v to a request for silence, want it granted", got)
				}
			}
			seq, err := tr.seq.Say("over the session")
			if err != nil {
				t.Fatal(err)
			}
			asker.nextBatch(t, tr, seq)
		})
	}
}

// lossyRoom is a room whose members lose, on multicast, the shares given,
// while the host says a line every 2 ms until stop is called.
type lossyRoom struct {
	tr      *testRoom
	members []*testMember
	stop    func() uint64 // stops the lines and returns the last one's seq
}

func newLossyRoom(t *testing.T, losses []float64) *lossyRoom {
	t.Helper()
	n := memnet.New(12)
	lr := &lossyRoom{tr: newTestRoom(t, n, "general")}
	for i, loss := range losses {
		addr := fmt.Sprintf("10.0.0.%d", i+2)
		n.SetLoss(netip.MustParseAddr(addr), loss)
		tm, err := lr.tr.join(addr, fmt.Sprintf("m%d", i), lr.tr.kn)
		if err != nil {
			t.Fatal(err)
		}
		lr.members = append(lr.members, tm)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if _, err := lr.tr.seq.Say(fmt.Sprintf("line %d", i)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var once sync.Once
	lr.stop = func() uint64 {
		once.Do(func() { cancel(); wg.Wait() })
		return lr.tr.seq.LastSeq()
	}
	t.Cleanup(func() { lr.stop() })
	return lr
}

// streaming tells whether tm gets the room over its session.
func (tm *testMember) streaming() bool {
	tm.m.mu.Lock()
	defer tm.m.mu.Unlock()
	return tm.m.rx.streaming
}

// complete waits until every member has delivered every line up to last,
// in order, with no gap declared. A member may have delivered more: a
// session that reconnects is sequenced as a part and a join after last.
func (lr *lossyRoom) complete(t *testing.T, last uint64) {
	t.Helper()
	for i, tm := range lr.members {
		got := tm.rec.waitFor(t, fmt.Sprintf("m%d to reach #%d", i, last), func(d []Delivery) bool {
			return len(d) > 0 && d[len(d)-1].Seq >= last
		})
		for k := 1; k < len(got); k++ {
			if got[k].Seq != got[k-1].Seq+1 {
				t.Fatalf("m%d delivered #%d after #%d", i, got[k].Seq, got[k-1].Seq)
			}
		}
		tm.gapMu.Lock()
		gaps := len(tm.gaps)
		tm.gapMu.Unlock()
		if gaps > 0 {
			t.Errorf("m%d declared %d gaps", i, gaps)
		}
	}
}

// TestSharedLossKeepsMembersOnMulticast: when every member loses most of
// multicast alike (the host's own link, as when it overruns a radio's
// rate), each asks for the stream and is refused, none moves to its
// session, and every line still reaches every member, repaired by NACKs
// and fetches.
func TestSharedLossKeepsMembersOnMulticast(t *testing.T) {
	lr := newLossyRoom(t, []float64{0.75, 0.75, 0.75, 0.75})
	for i, tm := range lr.members {
		waitUntil(t, fmt.Sprintf("m%d to be refused the stream", i), func() bool { return tm.stats.StreamRefused.Load() > 0 })
	}
	last := lr.stop()
	for i, tm := range lr.members {
		if n := tm.stats.StreamSwitches.Load(); n != 0 || tm.streaming() {
			t.Errorf("m%d changed path %d times (streaming now: %v), want it kept on multicast", i, n, tm.streaming())
		}
	}
	lr.complete(t, last)
}

// TestLoneLossyMemberStreams: a member that loses far more than the rest
// of the room (its own link) is granted the stream; the others stay on
// multicast.
func TestLoneLossyMemberStreams(t *testing.T) {
	lr := newLossyRoom(t, []float64{0.02, 0.02, 0.02, 0.75})
	lossy := lr.members[3]
	waitUntil(t, "the lossy member to stream", lossy.streaming)
	last := lr.stop()
	if n := lossy.stats.StreamRefused.Load(); n != 0 {
		t.Errorf("the lossy member was refused the stream %d times", n)
	}
	for i, tm := range lr.members[:3] {
		if n := tm.stats.StreamSwitches.Load(); n != 0 {
			t.Errorf("m%d at 2 %% loss changed path %d times", i, n)
		}
	}
	lr.complete(t, last)
}

// TestSilentMembersStream: members that multicast does not reach at all
// get the stream, even when the whole room is in the same state.
func TestSilentMembersStream(t *testing.T) {
	lr := newLossyRoom(t, []float64{1, 1, 1})
	for i, tm := range lr.members {
		waitUntil(t, fmt.Sprintf("m%d to stream", i), tm.streaming)
	}
	last := lr.stop()
	for i, tm := range lr.members {
		if n := tm.stats.StreamRefused.Load(); n != 0 {
			t.Errorf("m%d was refused the stream %d times", i, n)
		}
	}
	lr.complete(t, last)
}

// TestRepairHold: NACKs for a block within repairHold of its repair ask
// for what is on its way already, and get only what they ask beyond it;
// once the hold has passed, a NACK (a member that lost the repair too)
// gets fresh shards again.
func TestRepairHold(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	makeBlocks(t, s, sink, 1, 40, 0)
	clock := time.Unix(1_000_000, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = func() time.Time { return clock }
	no := s.block
	repair := func(want int) int {
		sink.pkts = nil
		s.askLocked(no, want)
		s.mu.Unlock()
		s.repair()
		s.mu.Lock()
		return len(sink.pkts)
	}
	for _, step := range []struct {
		after     time.Duration
		want, got int
	}{
		{0, 3, 3},
		{5 * time.Millisecond, 3, 0}, // another member's NACK for the same loss
		{5 * time.Millisecond, 5, 2}, // a member that needs more
		{repairHold, 2, 2},           // a member that lost the repair asks again
	} {
		clock = clock.Add(step.after)
		if got := repair(step.want); got != step.got {
			t.Fatalf("%v on: a NACK for %d shards sent %d, want %d", step.after, step.want, got, step.got)
		}
	}
}

// slowSink is a link that takes per to carry a packet: each write moves
// clock on by that much, as a write to a full socket on a slow link
// blocks until the link has made room.
type slowSink struct {
	pktSink
	clock *testClock
	per   time.Duration
}

func (s *slowSink) WriteTo(b []byte, to netip.AddrPort) error {
	s.clock.add(s.per)
	return s.pktSink.WriteTo(b, to)
}

// testClock is a clock that moves only when told to.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// blockingSink is a link whose every write blocks for per, as a write to
// a full socket does while the link carries the packet before it.
type blockingSink struct{ per time.Duration }

func (s blockingSink) WriteTo([]byte, netip.AddrPort) error {
	time.Sleep(s.per)
	return nil
}

// TestPaceOfTheLink: the host times its link from its own writes, a full
// chunk at a time: writes that block for 1 ms each make a pace of about
// 1 ms a packet; a short chunk, what was left of a burst, leaves it be;
// a quiet second halves it.
func TestPaceOfTheLink(t *testing.T) {
	const per = time.Millisecond
	s := newPathHost(t, blockingSink{per})
	write := func(n int) time.Duration {
		s.mu.Lock()
		for range n {
			s.queueLocked(append(s.packetBufLocked(), 1), nil)
		}
		s.unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pace
	}
	// The smoothed pace closes a quarter of the gap a chunk: after 16,
	// all but 1 %.
	if pace := write(16 * drainChunk); pace < per*9/10 {
		t.Fatalf("pace %v after writes that blocked for %v each", pace, per)
	}
	s.mu.Lock()
	s.pace = 10 * time.Millisecond
	s.mu.Unlock()
	if pace := write(drainChunk - 1); pace != 10*time.Millisecond {
		t.Fatalf("pace %v after a short chunk; want the 10ms it was", pace)
	}
	// A second without a packet: the link's queues have drained.
	s.tick(time.Now().Add(Heartbeat))
	waitWritten(t, s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pace != 5*time.Millisecond {
		t.Fatalf("pace %v after a quiet second; want half the 10ms it was", s.pace)
	}
}

// TestRepairHoldCoversTheLink: on a link that takes 10 ms a packet (1
// Mbit/s, a pace the host learns from its writes: TestPaceOfTheLink), a
// repair round holds until its shards can have crossed the link, not
// only repairHold: a member's NACK sent again after nackRetry, its
// repair still on the link, gets nothing more; one asking beyond the
// round gets what it asks beyond; once the shards can have arrived, a
// NACK (the repair was lost too) gets fresh ones.
func TestRepairHoldCoversTheLink(t *testing.T) {
	const per = 10 * time.Millisecond
	clock := &testClock{t: time.Unix(1_000_000, 0)}
	sink := &slowSink{clock: clock, per: per}
	s := newPathHost(t, sink)
	makeBlocks(t, s, &sink.pktSink, 1, 40, 0)
	s.mu.Lock()
	s.now, s.pace = clock.now, per
	no := s.block
	s.mu.Unlock()
	repair := func(want int) int {
		n := len(sink.pkts)
		s.mu.Lock()
		s.askLocked(no, want)
		s.mu.Unlock()
		s.repair()
		return len(sink.pkts) - n
	}
	for _, step := range []struct {
		what      string
		after     time.Duration // since the step before, on top of its writes
		want, got int
	}{
		{"a NACK", 0, 3, 3},
		{"a member asking again after nackRetry, its repair on the link", nackRetry, 3, 0},
		{"another member, that needs more", 0, 5, 2},
		{"a member that lost the repair too", (2 + sendQueued) * per, 3, 3},
	} {
		clock.add(step.after)
		if got := repair(step.want); got != step.got {
			t.Fatalf("%s: a NACK for %d shards sent %d, want %d", step.what, step.want, got, step.got)
		}
	}
}
