package httpd

import (
	"strconv"
)

// NowWriter is implemented by the ResponseWriter of a streaming response.
// An event stream uses it to let the goroutine that produced an event
// write it itself, when the stream is idle, instead of handing it to the
// handler's goroutine: on a router the wake-up of that second goroutine
// cost more than the write (docs/BENCHMARKS.md, "The data path writes
// the event").
type NowWriter interface {
	// WriteNow sends p as one chunk of the body at once, without
	// blocking, if it can: the head is out, the body goes in chunks,
	// nothing written before is still waiting in the server's buffer, and
	// the connection takes the chunk now. taken reports whether p is now
	// part of the body; if not, nothing was sent and the caller writes p
	// the ordinary way (Write, then Flush), where any error of the
	// connection shows. pending reports that the connection took only the
	// start of the chunk: the rest waits in the server's buffer until the
	// next Flush.
	//
	// WriteNow may be called from a goroutine other than the handler's,
	// while the handler runs, but never at the same time as another
	// method of the ResponseWriter: the caller orders them.
	WriteNow(p []byte) (taken, pending bool)
}

// WriteNow implements NowWriter.
func (w *response) WriteNow(p []byte) (taken, pending bool) {
	// chunked implies the head is out, with a body allowed and not HEAD.
	if !w.chunked || w.err != nil || len(p) == 0 || w.c.bw.Buffered() > 0 {
		return false, false
	}
	frame := strconv.AppendInt(w.now[:0], int64(len(p)), 16)
	frame = append(frame, "\r\n"...)
	frame = append(frame, p...)
	frame = append(frame, "\r\n"...)
	// What the connection does not take waits in c.bw; a chunk larger than
	// that would have to block, so it goes the ordinary way. This also
	// bounds w.now.
	if len(frame) > w.c.bw.Available() {
		return false, false
	}
	w.now = frame
	n := w.c.writeNow(frame)
	if n == 0 {
		return false, false
	}
	w.written += int64(len(p))
	if n < len(frame) {
		// bw is empty and has room for all of frame: this cannot block.
		_, w.err = w.c.bw.Write(frame[n:])
		return true, true
	}
	return true, false
}
