package rooms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/secure"
	"meshd/rooms/wire"
)

// rawSession is a member's session driven by hand, so that a test can
// stop reading it.
type rawSession struct {
	conn    *secure.Conn
	welcome *wire.Welcome
	wmu     sync.Mutex // a test's goroutines may write frames at once
}

func dialRaw(t *testing.T, tr *testRoom, nick string) *rawSession {
	t.Helper()
	return dialRawBuffer(t, tr, nick, 0)
}

// dialRawBuffer is dialRaw with the member's receive buffer set to rcvbuf
// bytes (0: the kernel's, which grows to megabytes).
func dialRawBuffer(t *testing.T, tr *testRoom, nick string, rcvbuf int) *rawSession {
	t.Helper()
	raw, err := net.Dial("tcp", tr.kn.Addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	if rcvbuf > 0 {
		if err := raw.(*net.TCPConn).SetReadBuffer(rcvbuf); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { raw.Close() })
	conn, err := secure.Client(context.Background(), raw, secure.Config{Static: newTestIdentity(t).static}, tr.kn.Key())
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.AppendFrame(nil, &wire.Hello{Room: "general", Nick: nick})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	f, _, err := wire.ReadFrame(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := f.(*wire.Welcome)
	if !ok {
		t.Fatalf("host answered %T, want a welcome", f)
	}
	return &rawSession{conn: conn, welcome: w}
}

func (rs *rawSession) write(t *testing.T, f wire.Frame) {
	t.Helper()
	if err := rs.send(f); err != nil {
		t.Fatal(err)
	}
}

func (rs *rawSession) send(f wire.Frame) error {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		return err
	}
	rs.wmu.Lock()
	defer rs.wmu.Unlock()
	_, err = rs.conn.Write(b)
	return err
}

// keepAlive acks once a second until the test ends, as a live member's
// keepalive does however far behind its reader is: the host ends a
// session that sends nothing for memberIdle, as a member that is gone.
func (rs *rawSession) keepAlive(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := rs.send(&wire.Ack{Seq: rs.welcome.Next - 1}); err != nil && ctx.Err() == nil {
					t.Errorf("ack: %v", err)
					return
				}
			}
		}
	}()
}

// lagStuck is how long a lagging member lets the host's writer wait
// before it reads (lag): well within writeTimeout.
const lagStuck = 2 * time.Second

// lag has the member fall behind: until the returned function is called,
// which returns what it read, it reads only once the host's writer for it
// (sess) has waited lagStuck on the full connection, and only until the
// writer moves on. The host ends a session whose write makes no progress
// for writeTimeout, as a member that is gone; one that reads, however
// little, is only behind.
//
// The member's receive buffer should be small (dialRawBuffer), and lag
// makes the host's send buffer small: a receiver whose buffer filled
// reopens its window only once half of it is free, a sender only takes
// more once a third of its buffer is, and the kernel grows both to
// megabytes, which would have the member read most of what the room said.
func (rs *rawSession) lag(t *testing.T, sess *hostSession) func() []byte {
	t.Helper()
	var serr error
	if err := sess.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 64<<10)
	}); err != nil || serr != nil {
		t.Fatalf("host's send buffer: %v %v", err, serr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var kept []byte
	go func() {
		defer close(done)
		tick := time.NewTicker(lagStuck / 10)
		defer tick.Stop()
		p := make([]byte, 64<<10)
		// The writer moves on when it takes its next chunk of records
		// (next), or when it is done.
		writer := func() (bool, uint64) {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			return sess.writing, sess.next
		}
		_, at := writer()
		since := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			writing, next := writer()
			if !writing || next != at {
				at, since = next, time.Now()
				continue
			}
			if time.Since(since) < lagStuck {
				continue
			}
			for writing && next == at && ctx.Err() == nil {
				// A read that times out keeps what it had of a record
				// (secure.Conn), so the next one goes on from there.
				rs.conn.SetReadDeadline(time.Now().Add(lagStuck / 10))
				n, err := rs.conn.Read(p)
				kept = append(kept, p[:n]...)
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("lagging read: %v", err)
					return
				}
				writing, next = writer()
			}
			at, since = next, time.Now()
		}
	}()
	stop := sync.OnceValue(func() []byte {
		cancel()
		<-done
		return kept
	})
	t.Cleanup(func() { stop() })
	return stop
}

// TestSlowMemberCatchesUp: a member on the session path that falls far
// behind, reading only a little while the room says megabytes, is neither
// dropped nor skipped, the host queues no more than its bound for it, and
// once it reads at full speed it gets every line, in order, each once,
// even though it asked for the same lines again meanwhile.
//
// The member acks and reads a little however long the room takes to say
// it all, as a live member does: a member that sent nothing for
// memberIdle, or took nothing for writeTimeout, is gone, not slow, and the
// host ends its session. With -race on a loaded machine the room can take
// longer than that to say it, and a member that merely stopped reading
// was dropped.
func TestSlowMemberCatchesUp(t *testing.T) {
	tr := newTestRoom(t, memnet.New(5), "general")
	rs := dialRawBuffer(t, tr, "slow", 64<<10)
	rs.write(t, &wire.Stream{On: true})
	rs.keepAlive(t)
	tr.seq.mu.Lock()
	var sess *hostSession
	for _, m := range tr.seq.members {
		sess = m
	}
	tr.seq.mu.Unlock()
	lagged := rs.lag(t, sess)

	// About 8 MB: more than the queue bound, and than the kernel buffers
	// between the two ends.
	const lines, senders = 8000, 32
	text := strings.Repeat("x", 1000)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := s; i < lines; i += senders {
				if _, err := tr.seq.Say(fmt.Sprintf("%d %s", i, text)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// The member asks for everything again while it lags, as a member
	// that sees a gap does.
	rs.write(t, &wire.Fetch{From: rs.welcome.Next, Count: 1024})
	wg.Wait()
	last := tr.seq.LastSeq()

	tr.seq.mu.Lock()
	_, in := tr.seq.members[sess.keyID]
	tr.seq.mu.Unlock()
	if !in {
		t.Fatal("the slow member was dropped from the room")
	}
	sess.mu.Lock()
	queued, next, end := sess.queued, sess.next, sess.end
	sess.mu.Unlock()
	if queued > sessionQueueBytes {
		t.Errorf("%d bytes queued for the member, bound %d", queued, sessionQueueBytes)
	}
	if next >= end {
		t.Fatalf("the session wrote everything (next %d, end %d) although the member read only to unstick it: the test did not make it slow", next, end)
	}
	rs.write(t, &wire.Fetch{From: rs.welcome.Next, Count: 1024})
	// What the member read while it lagged comes first.
	r := io.MultiReader(bytes.NewReader(lagged()), rs.conn)

	seen := make(map[uint64]int)
	opts := batchOpts(rs.welcome.Room)
	want := rs.welcome.Next
	var buf []byte
	for want <= last {
		rs.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, b, err := wire.ReadFrame(r, buf)
		buf = b
		if err != nil {
			t.Fatalf("session ended at #%d of #%d: %v", want, last, err)
		}
		switch f := f.(type) {
		case *wire.BatchFrame:
			bt, err := verifyBatch(tr.kn.Key(), opts, f.Batch, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range bt.Records {
				seq := bt.First + uint64(i)
				seen[seq]++
				if seq == want {
					want++
				}
			}
		case *wire.Gone:
			t.Fatalf("lines %d..%d declared gone; the log holds them", f.From, f.To-1)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if dups > 0 {
		t.Errorf("%d records written twice", dups)
	}
}

// TestCatchUpDeclaresWhatTheLogLost: records the log no longer holds are
// declared Gone, in order with the rest, never skipped.
func TestCatchUpDeclaresWhatTheLogLost(t *testing.T) {
	tr := newTestRoomHistory(t, memnet.New(6), "general", 4)
	for i := range 12 {
		if _, err := tr.seq.Say(fmt.Sprintf("line %d", i)); err != nil {
			t.Fatal(err)
		}
		tr.seq.flush()
	}
	oldest := tr.store.Oldest()
	buf, next := tr.seq.logFrames(nil, 1, tr.seq.LastSeq()+1)
	if next != tr.seq.LastSeq()+1 {
		t.Fatalf("stopped at #%d, want #%d", next, tr.seq.LastSeq()+1)
	}
	r := bytes.NewReader(buf)
	f, _, err := wire.ReadFrame(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := f.(*wire.Gone); !ok || g.From != 1 || g.To != oldest {
		t.Fatalf("first frame %+v, want Gone 1..%d", f, oldest-1)
	}
	for r.Len() > 0 {
		if f, _, err = wire.ReadFrame(r, nil); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.(*wire.BatchFrame); !ok {
			t.Fatalf("then %T, want only batches", f)
		}
	}
}

// acksBefore sends n acks and then a Say, and counts the host's answers
// to the acks before the Say's Said: the host reads a session's frames in
// order and queues its answers in order, so the Said closes the count.
func (rs *rawSession) acksBefore(t *testing.T, n int, id uint32) int {
	t.Helper()
	for range n {
		rs.write(t, &wire.Ack{Seq: rs.welcome.Next})
	}
	rs.write(t, &wire.Say{ID: id, Text: "closes the count"})
	answers := 0
	rs.readUntil(t, "no Said", func(f wire.Frame) bool {
		switch f := f.(type) {
		case *wire.Ack:
			answers++
		case *wire.Said:
			return f.ID == id
		}
		return false
	})
	return answers
}

// TestAckAnswersPaced: the host answers a member's acks at most once per
// ackAnswerEvery, however many it sends, and answers again after that.
// The host's clock is the test's.
func TestAckAnswersPaced(t *testing.T) {
	tr := newTestRoom(t, memnet.New(7), "general")
	clock := time.Unix(1_000_000, 0)
	tr.seq.mu.Lock()
	tr.seq.now = func() time.Time { return clock }
	tr.seq.mu.Unlock()
	advance := func(d time.Duration) {
		tr.seq.mu.Lock()
		clock = clock.Add(d)
		tr.seq.mu.Unlock()
	}
	rs := dialRaw(t, tr, "acker")
	if n := rs.acksBefore(t, 20, 1); n != 1 {
		t.Errorf("20 acks in a burst drew %d answers, want 1", n)
	}
	advance(ackAnswerEvery - time.Millisecond)
	if n := rs.acksBefore(t, 1, 2); n != 0 {
		t.Errorf("an ack within %v of the last answer drew %d answers, want 0", ackAnswerEvery, n)
	}
	advance(time.Millisecond)
	if n := rs.acksBefore(t, 3, 3); n != 1 {
		t.Errorf("3 acks %v after the last answer drew %d answers, want 1", ackAnswerEvery, n)
	}
}

// TestSessionFramesTogether: frames that arrive together, in one record,
// are each answered at once. The host's reader waits for the connection
// to become readable between frames, and must not while the session holds
// input already: here the Say would wait for the member's next frame, and
// the member waits for its Said.
func TestSessionFramesTogether(t *testing.T) {
	tr := newTestRoom(t, memnet.New(5), "general")
	rs := dialRaw(t, tr, "m")
	b, err := wire.AppendFrame(nil, &wire.Ack{Seq: rs.welcome.Next - 1})
	if err != nil {
		t.Fatal(err)
	}
	if b, err = wire.AppendFrame(b, &wire.Say{ID: 7, Text: "together"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.conn.Write(b); err != nil {
		t.Fatal(err)
	}
	// Well within memberIdle, after which the host would end the session.
	rs.conn.SetReadDeadline(time.Now().Add(memberIdle / 2))
	for {
		f, _, err := wire.ReadFrame(rs.conn, nil)
		if err != nil {
			t.Fatalf("no Said for a Say that came with an Ack: %v", err)
		}
		if said, ok := f.(*wire.Said); ok && said.ID == 7 {
			if said.Error != "" {
				t.Fatalf("Said: %s", said.Error)
			}
			return
		}
	}
}

// TestIdleSessionHasNoWriter: a session's writer runs only while it has
// something to write. Once a streaming member has what the room said, its
// session is its reader alone; the next line starts a writer again, which
// delivers it and ends.
func TestIdleSessionHasNoWriter(t *testing.T) {
	tr := newTestRoom(t, memnet.New(7), "general")
	rs := dialRaw(t, tr, "idle")
	rs.write(t, &wire.Stream{On: true})
	tr.seq.mu.Lock()
	var sess *hostSession
	for _, m := range tr.seq.members {
		sess = m
	}
	tr.seq.mu.Unlock()
	writing := func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.writing
	}
	// The member reads its session as it goes, so the writer can finish.
	got := make(chan uint64, 16)
	go func() {
		var buf []byte
		for {
			f, b, err := wire.ReadFrame(rs.conn, buf)
			buf = b
			if err != nil {
				close(got)
				return
			}
			if bf, ok := f.(*wire.BatchFrame); ok {
				bt, err := verifyBatch(tr.kn.Key(), batchOpts(rs.welcome.Room), bf.Batch, nil, nil)
				if err != nil {
					t.Error(err)
					continue
				}
				got <- bt.First + uint64(len(bt.Records)) - 1
			}
		}
	}()
	for round := range 3 {
		seq, err := tr.seq.Say(fmt.Sprintf("line %d", round))
		if err != nil {
			t.Fatal(err)
		}
		for last := uint64(0); last < seq; {
			select {
			case l, ok := <-got:
				if !ok {
					t.Fatalf("session ended before #%d", seq)
				}
				last = l
			case <-time.After(10 * time.Second):
				t.Fatalf("#%d not written over the session", seq)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for writing() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the writer still runs with nothing to write", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
	rs.conn.Close()
}
