package rooms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
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
}

func dialRaw(t *testing.T, tr *testRoom, nick string) *rawSession {
	t.Helper()
	raw, err := net.Dial("tcp", tr.kn.Addrs[0].String())
	if err != nil {
		t.Fatal(err)
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
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestSlowMemberCatchesUp: a member on the session path that stops
// reading while the room says megabytes is neither dropped nor skipped,
// the host queues no more than its bound for it, and once it reads again
// it gets every line, in order, each once, even though it asked for the
// same lines again meanwhile.
func TestSlowMemberCatchesUp(t *testing.T) {
	tr := newTestRoom(t, memnet.New(5), "general")
	rs := dialRaw(t, tr, "slow")
	rs.write(t, &wire.Stream{On: true})

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
	// The member asks for everything again while it is not reading, as a
	// member that sees a gap does.
	rs.write(t, &wire.Fetch{From: rs.welcome.Next, Count: 1024})
	wg.Wait()
	last := tr.seq.LastSeq()

	tr.seq.mu.Lock()
	var sess *hostSession
	for _, m := range tr.seq.members {
		sess = m
	}
	tr.seq.mu.Unlock()
	if sess == nil {
		t.Fatal("the slow member was dropped from the room")
	}
	sess.mu.Lock()
	queued, next, end := sess.queued, sess.next, sess.end
	sess.mu.Unlock()
	if queued > sessionQueueBytes {
		t.Errorf("%d bytes queued for the member, bound %d", queued, sessionQueueBytes)
	}
	if next >= end {
		t.Fatalf("the session wrote everything (next %d, end %d) although the member read nothing: the test did not make it slow", next, end)
	}
	rs.write(t, &wire.Fetch{From: rs.welcome.Next, Count: 1024})

	seen := make(map[uint64]int)
	opts := batchOpts(rs.welcome.Room)
	want := rs.welcome.Next
	var buf []byte
	for want <= last {
		rs.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, b, err := wire.ReadFrame(rs.conn, buf)
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

// acks waits for the host's answer to rs's acks, then counts the Acks it
// sends until it has been quiet for quiet.
func (rs *rawSession) acks(t *testing.T, quiet time.Duration) int {
	t.Helper()
	n := 0
	var buf []byte
	for {
		wait := quiet
		if n == 0 {
			wait = 10 * time.Second // the first answer, however loaded the machine
		}
		rs.conn.SetReadDeadline(time.Now().Add(wait))
		f, b, err := wire.ReadFrame(rs.conn, buf)
		buf = b
		if n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.(*wire.Ack); ok {
			n++
		}
	}
}

// TestAckAnswersPaced: the host answers a member's acks at most once per
// ackAnswerEvery, however many it sends, and answers again after that.
func TestAckAnswersPaced(t *testing.T) {
	tr := newTestRoom(t, memnet.New(7), "general")
	rs := dialRaw(t, tr, "acker")
	for range 20 {
		rs.write(t, &wire.Ack{Seq: rs.welcome.Next})
	}
	if n := rs.acks(t, ackAnswerEvery/2); n != 1 {
		t.Errorf("20 acks in a burst drew %d answers, want 1", n)
	}
	time.Sleep(ackAnswerEvery)
	rs.write(t, &wire.Ack{Seq: rs.welcome.Next})
	if n := rs.acks(t, ackAnswerEvery/2); n != 1 {
		t.Errorf("an ack after %v drew %d answers, want 1", ackAnswerEvery, n)
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
