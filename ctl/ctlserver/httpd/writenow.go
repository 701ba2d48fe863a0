package httpd

import (
	"strconv"
)

// NowWriter is implemented by the ResponseWriter of a streaming response.
// An event stream uses it to let the goroutine that produced events write
// them itself, when the stream is idle, instead of handing each to the
// handler's goroutine: on a router the wake-up of that second goroutine
// cost more than the write (docs/BENCHMARKS.md, "The data path writes
// its events").
//
// Its methods may be called from a goroutine other than the handler's,
// while the handler runs, but never at the same time as another method of
// the ResponseWriter: the caller orders them.
type NowWriter interface {
	// BufferNow holds p as one chunk of the body, for SendNow, if the
	// response can take it that way: the head is out, the body goes in
	// chunks, nothing the handler wrote is waiting to be sent, and what
	// is held, p included, fits the server's buffer (4 KiB). If not, it
	// returns false and holds nothing: the caller may SendNow and try
	// again, or write p the ordinary way (Write, then Flush). Write and
	// Flush send what BufferNow held before anything else.
	BufferNow(p []byte) bool
	// SendNow writes what BufferNow held to the connection without
	// waiting. pending reports that the connection took only part of it,
	// or none (it is full, broken, or past its write deadline): the rest
	// waits in the server's buffer, and the caller must see to a Flush,
	// which waits for the reader or reports the error.
	SendNow() (pending bool)
}

// BufferNow implements NowWriter.
func (w *response) BufferNow(p []byte) bool {
	// chunked implies the head is out, with a body allowed and not HEAD.
	if !w.chunked || w.err != nil || len(p) == 0 || w.c.bw.Buffered() > 0 {
		return false
	}
	// What the connection does not take waits in c.bw, so what is held
	// must fit it: then moving it there never blocks. This also bounds
	// w.now.
	if len(w.now)+chunkLen(len(p)) > w.c.bw.Size() {
		return false
	}
	w.now = strconv.AppendInt(w.now, int64(len(p)), 16)
	w.now = append(w.now, "\r\n"...)
	w.now = append(w.now, p...)
	w.now = append(w.now, "\r\n"...)
	w.written += int64(len(p))
	return true
}

// chunkLen is the length of a chunk of n bytes of data, framing included:
// its size in hex, then two CRLFs.
func chunkLen(n int) int {
	l := 1 + 2 + n + 2
	for x := n >> 4; x > 0; x >>= 4 {
		l++
	}
	return l
}

// SendNow implements NowWriter.
func (w *response) SendNow() (pending bool) {
	if len(w.now) == 0 {
		return false
	}
	n := w.c.writeNow(w.now)
	rest := w.now[n:]
	w.now = w.now[:0]
	if len(rest) == 0 {
		return false
	}
	// c.bw is empty (BufferNow held chunks only while it was) and rest
	// fits it: no system call.
	if _, err := w.c.bw.Write(rest); err != nil && w.err == nil {
		w.err = err
	}
	return true
}

// takeNow moves what BufferNow held into c.bw, ahead of whatever the
// handler writes next; c.bw is empty then, so this never blocks.
func (w *response) takeNow() {
	if len(w.now) > 0 {
		if _, err := w.c.bw.Write(w.now); err != nil && w.err == nil {
			w.err = err
		}
		w.now = w.now[:0]
	}
}
