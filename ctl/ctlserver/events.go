package ctlserver

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"meshd/ctl"
	"meshd/ctl/ctlserver/httpd"
)

// eventStream is one GET /v0/events response. Its live events reach the
// client two ways: the goroutine that publishes events writes them itself
// (Direct) when the stream is idle and the socket has room, else the
// backend queues them on the live channel for the handler's goroutine.
// The first spares a member at 100 lines a second a goroutine wake-up per
// line; the second keeps a slow reader from ever blocking the publisher
// (a room's data path). Order holds because Take takes an event only
// while no queued one is left unwritten, and the handler's writes send
// what Take held first.
type eventStream struct {
	s    *Server
	w    httpd.ResponseWriter
	nw   httpd.NowWriter // nil if the connection cannot write without waiting
	room string

	// mu orders every use of w. The handler holds it while it writes,
	// including a flush that may wait for a slow reader; Take and Send
	// only try it, so they never wait.
	mu   sync.Mutex
	line []byte // the event being encoded
	// live is set once the snapshot is out: Take may take events only
	// after it. done is set as the handler returns: nothing may write
	// after it.
	live, done bool
	// queued counts events Take declined, which the backend therefore put
	// on the live channel, that the handler has not yet written. Take
	// takes none while it is above 0, so that it never overtakes one.
	// Raised by Take (under the backend's lock, not mu), lowered by the
	// handler under mu.
	queued atomic.Int64
	// queuedText is the bytes of text of those events: at most
	// maxQueuedText (Full).
	queuedText atomic.Int64
	// kick asks the handler to flush what the socket did not take from
	// Send.
	kick chan struct{}
}

// Take implements Direct.
func (es *eventStream) Take(ev *ctl.Event) bool {
	if es.mu.TryLock() {
		ok := es.takeLocked(ev)
		es.mu.Unlock()
		if ok {
			return true
		}
	}
	es.queued.Add(1)
	es.queuedText.Add(int64(len(ev.Text)))
	return false
}

// maxQueuedText bounds the bytes of text of the events that wait for a
// stream's handler (Full): thousands of 200-byte lines, 64 of 16 KB.
const maxQueuedText = 1 << 20

// Full implements Direct.
func (es *eventStream) Full() bool { return es.queuedText.Load() > maxQueuedText }

func (es *eventStream) takeLocked(ev *ctl.Event) bool {
	if es.nw == nil || !es.live || es.done || es.queued.Load() != 0 {
		return false
	}
	line, err := appendEvent(es.line[:0], ev)
	if err != nil {
		return false // the handler meets the same error and ends the stream
	}
	es.line = line
	if es.nw.BufferNow(line) {
		return true
	}
	// What is held is full: send it, then hold this one.
	es.sendLocked()
	return es.nw.BufferNow(line)
}

// Send implements Direct. If the handler holds mu, it is writing, and it
// flushes before it lets go: what Take held goes out then.
func (es *eventStream) Send() {
	if !es.mu.TryLock() {
		return
	}
	if es.nw != nil && !es.done {
		es.sendLocked()
	}
	es.mu.Unlock()
}

func (es *eventStream) sendLocked() {
	if es.nw.SendNow() {
		select {
		case es.kick <- struct{}{}:
		default: // a kick is already waiting
		}
	}
}

// encode appends ev to the response; it reports false once the stream is
// broken. The caller holds mu.
func (es *eventStream) encode(ev *ctl.Event) bool {
	var err error
	if es.line, err = appendEvent(es.line[:0], ev); err == nil {
		_, err = es.w.Write(es.line)
	}
	if err != nil {
		es.s.log.Debug("event stream write failed", "room", es.room, "err", err)
		return false
	}
	return true
}

// flush sends what the response holds. The caller holds mu.
func (es *eventStream) flush() bool {
	if err := es.w.Flush(); err != nil {
		es.s.log.Debug("event stream flush failed", "room", es.room, "err", err)
		return false
	}
	return true
}

// events streams ctl.Events as newline-delimited JSON, flushing each line
// (or each burst of lines) so a follower sees it at once.
func (s *Server) events(w httpd.ResponseWriter, r *httpd.Request) {
	q := r.URL.Query()
	room := q.Get("room")
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, httpd.StatusBadRequest, fmt.Sprintf("since=%q is not a sequence number: use a whole number such as since=41", v))
			return
		}
		since = n
	}
	var initial bool
	if v := q.Get("initial"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, httpd.StatusBadRequest, fmt.Sprintf("initial=%q is not a boolean: use initial=1 or initial=0", v))
			return
		}
		initial = b
	}

	es := &eventStream{s: s, w: w, room: room, kick: make(chan struct{}, 1)}
	es.nw, _ = w.(httpd.NowWriter)
	// Whatever way the handler leaves, Take and Send must not write after
	// it: the server then ends the response on the same connection.
	defer func() {
		es.mu.Lock()
		es.done = true
		es.mu.Unlock()
	}()
	ctx := r.Context()
	snapshot, live, err := s.b.Subscribe(ctx, room, since, initial, es)
	if err != nil {
		s.writeBackendError(w, r, err)
		return
	}
	if !es.start(snapshot, initial) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-es.kick:
			es.mu.Lock()
			ok := es.flush()
			es.mu.Unlock()
			if !ok {
				return
			}
		case ev, ok := <-live:
			if !es.burst(ctx, live, ev, ok) {
				return
			}
		}
	}
}

// start sends the head, the snapshot and, if asked for, its end; then
// lets Take take events.
func (es *eventStream) start(snapshot []ctl.Event, initial bool) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.w.Header().Set("Content-Type", "application/x-ndjson")
	es.w.Header().Set("Cache-Control", "no-store")
	es.w.WriteHeader(httpd.StatusOK)
	// Flush the headers now, so the client knows it is subscribed even if
	// nothing happens for a while.
	if !es.flush() {
		return false
	}
	for i := range snapshot {
		if !es.encode(&snapshot[i]) || !es.flush() {
			return false
		}
	}
	if initial {
		if !es.encode(&ctl.Event{Kind: ctl.EventSnapshotEnd, Room: es.room}) || !es.flush() {
			return false
		}
	}
	es.live = true
	return true
}

// burst writes the queued event ev and any queued after it, then
// flushes them together: in a busy room a write per line would cost a
// system call each, while a burst that is already queued goes out in one.
// A closed channel (ok false) means the subscriber fell behind.
func (es *eventStream) burst(ctx context.Context, live <-chan ctl.Event, ev ctl.Event, ok bool) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	for {
		if !ok {
			if ctx.Err() == nil {
				es.s.log.Info("event subscriber fell behind; ending its stream", "room", es.room)
				if es.encode(&ctl.Event{Kind: ctl.EventOverflow, Room: es.room}) {
					es.flush()
				}
			}
			return false
		}
		if !es.encode(&ev) {
			return false
		}
		es.queued.Add(-1)
		es.queuedText.Add(-int64(len(ev.Text)))
		select {
		case ev, ok = <-live:
			continue
		default:
		}
		return es.flush()
	}
}
