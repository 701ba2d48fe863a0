package ctlserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctltest"
)

// An event published while its stream is idle is written by the
// publisher, not handed to the handler's goroutine.
func TestEventStreamWrittenByPublisher(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	s, err := srv.Client.Events(context.Background(), "", 0, true)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	if ev := nextEvent(t, s); ev.Kind != ctl.EventSnapshotEnd {
		t.Fatalf("first event = %+v, want snapshot_end", ev)
	}
	const n = 200
	for i := range uint64(n) {
		b.Publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: i + 1, Text: "x"})
		if ev := nextEvent(t, s); ev.Seq != i+1 {
			t.Fatalf("event %d = %+v, want seq %d", i, ev, i+1)
		}
	}
	if d := b.Direct(); d < n/2 {
		t.Errorf("%d of %d events written by the publisher, want most", d, n)
	}
	t.Logf("%d of %d written by the publisher", b.Direct(), n)
}

// A reader that stops reading never holds up the publisher: once its
// socket is full, events queue for the handler, which waits for the
// reader, and the queue overflowing ends the stream. Every event before
// the overflow reaches the reader, in order, whichever way it went. With
// long lines the queue overflows by its text, not its count: a stuck
// reader of 16 KB lines kept 4096 of them, 64 MB.
func TestEventStreamSlowReader(t *testing.T) {
	t.Run("3000", func(t *testing.T) {
		b, _, delivered := slowReader(t, 3000, 0)
		if d := b.Direct(); d < 2 || d >= int(delivered) {
			t.Errorf("%d events before the overflow, %d of them written by the publisher; want some either way, after the first", delivered, d)
		}
	})
	t.Run("16384", func(t *testing.T) {
		// A line longer than a stream's buffer always waits for the
		// handler; 64 of them fill the queue (maxQueuedText), plus what
		// the socket holds, in a queue of the daemon's 4096 events.
		if _, published, _ := slowReader(t, 16<<10, 4096); published > 1000 {
			t.Errorf("%d events of 16 KB published before the overflow, want at most 1000", published)
		}
	})
}

// slowReader runs TestEventStreamSlowReader with lines of n bytes and a
// backend that queues queue events a subscriber (ctltest.Backend.Queue):
// it returns the backend, how many events were published before the
// stream overflowed and how many the reader got before the overflow
// event.
func slowReader(t *testing.T, n, queue int) (b *ctltest.Backend, published, delivered uint64) {
	b = ctltest.NewBackend()
	b.Queue = queue
	srv := ctltest.Start(t, b)
	c, err := net.Dial("unix", srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET /v0/events HTTP/1.1\r\nHost: meshd.sock\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}

	// Publish and read lines one by one until the stream is idle, so that
	// the publisher writes the next; then publish until the subscription
	// is dropped for falling behind, with nothing read meanwhile.
	text := strings.Repeat("x", n)
	dec := json.NewDecoder(resp.Body)
	var first uint64
	for b.Direct() == 0 && first < 100 {
		first++
		b.Publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: first, Text: text})
		var ev ctl.Event
		if err := dec.Decode(&ev); err != nil || ev.Seq != first {
			t.Fatalf("event %d: %+v, %v", first, ev, err)
		}
	}
	lastc := make(chan uint64, 1)
	go func() {
		seq := first
		for b.Subscribers() > 0 {
			seq++
			b.Publish(ctl.Event{Kind: ctl.EventMessage, Room: "r", Seq: seq, Text: text})
		}
		lastc <- seq
	}()
	var last uint64
	select {
	case last = <-lastc:
	case <-time.After(20 * time.Second):
		t.Fatal("publishing to a stream nobody reads blocked")
	}

	seq := first
	for {
		var ev ctl.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("after event %d of %d: %v; want an overflow event", seq, last, err)
		}
		if ev.Kind == ctl.EventOverflow {
			break
		}
		if ev.Seq != seq+1 || ev.Text != text {
			t.Fatalf("after event %d: got %s #%d; want message #%d", seq, ev.Kind, ev.Seq, seq+1)
		}
		seq++
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("after the overflow event: %v; want the body to end", err)
	}
	t.Logf("%d events published, %d delivered, %d of them by the publisher", last, seq, b.Direct())
	return b, last, seq
}
