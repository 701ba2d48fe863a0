package rooms

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/rooms/wire"
)

// sendQueuedLocked writes the outbox with the room's lock held, as unlock
// does once it lets the lock go: a test that looks at what a step sent,
// before it lets the lock go, calls it first. Packets a step queued are
// sent by the time the step's caller has the lock back.
func (s *Sequencer) sendQueuedLocked() {
	for _, pkt := range s.outbox {
		if err := s.host.cfg.Sender.WriteTo(pkt, s.group); err != nil {
			panic(err)
		}
	}
	s.outbox = s.outbox[:0]
}

// gatedSink is a link that carries nothing until its gate opens: the
// first write waits there, as a write to a full socket does.
type gatedSink struct {
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	pkts    [][]byte
}

func (g *gatedSink) WriteTo(b []byte, _ netip.AddrPort) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	g.mu.Lock()
	g.pkts = append(g.pkts, slices.Clone(b))
	g.mu.Unlock()
	return nil
}

// TestBlockedLinkDoesNotStallTheRoom: while the host's link carries
// nothing, the room goes on sequencing lines, holding the rest in its
// outbox, until the outbox is full; then says wait for the link (and are
// counted), not for the room's lock. Once the link drains, every line is
// answered and every block goes out whole, in order.
func TestBlockedLinkDoesNotStallTheRoom(t *testing.T) {
	sink := &gatedSink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := newPathHost(t, sink)
	stats := s.host.cfg.Stats
	type said struct {
		seq uint64
		err error
	}
	results := make(chan said, 64)
	say := func(text string) {
		seq, err := s.Say(text)
		results <- said{seq, err}
	}
	go say("first") // the room's first block: its sayer writes it, and waits at the gate
	select {
	case <-sink.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first line was never written")
	}
	// Lines of 16 KiB, 13 shards each: the outbox fills in a few.
	long := strings.Repeat("x", wire.MaxText)
	const says = 20
	for range says {
		go say(long)
	}
	waitUntil(t, "a say waiting for the link", func() bool { return stats.SaysWaited.Load() > 0 })
	s.mu.Lock()
	queued, seq := len(s.outbox), s.next-1
	s.mu.Unlock()
	if queued < outboxLimit {
		t.Errorf("a say waits with %d packets queued, want at least %d", queued, outboxLimit)
	}
	if seq < 3 {
		t.Errorf("with the link blocked, the room sequenced up to %d, want lines after the first", seq)
	}
	// The says that came before the outbox filled were logged and
	// answered, while the first is still writing.
	waitUntil(t, "a say answered while the link is blocked", func() bool { return len(results) > 0 })

	close(sink.gate)
	seen := make(map[uint64]bool)
	for range says + 1 {
		select {
		case r := <-results:
			if r.err != nil || seen[r.seq] {
				t.Fatalf("say answered %d, %v; want a new sequence number", r.seq, r.err)
			}
			seen[r.seq] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("%d says answered once the link drained, want %d", len(seen), says+1)
		}
	}
	// Every block went out whole and in order.
	waitUntil(t, "the outbox written", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.outbox) == 0 && !s.draining
	})
	s.mu.Lock()
	last := s.block
	s.mu.Unlock()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	shards := make(map[uint64]int)
	var prev uint64
	for _, p := range sink.pkts {
		si, err := wire.ParseShardInfo(p)
		if err != nil {
			continue // a heartbeat
		}
		if si.Block < prev {
			t.Fatalf("block %d written after block %d", si.Block, prev)
		}
		prev = si.Block
		shards[si.Block]++
	}
	for no := uint64(1); no <= last; no++ {
		sb := s.blocks[no%sentBlocks]
		if sb != nil && sb.no == no && shards[no] != sb.sent {
			t.Errorf("block %d: %d shards written, want %d", no, shards[no], sb.sent)
		}
		if shards[no] == 0 {
			t.Errorf("block %d never written", no)
		}
	}
}
