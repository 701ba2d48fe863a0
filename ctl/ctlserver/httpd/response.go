package httpd

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ResponseWriter is how a handler answers. Until the first Flush, or until
// the body outgrows an internal buffer, the response is held back, so that
// a handler that never flushes is answered with a Content-Length; after
// that the head is out and the body goes in chunks, each Flush sending what
// was written so far.
type ResponseWriter interface {
	// Header is the response's header; changes after WriteHeader, Write
	// or Flush have no effect.
	Header() Header
	// WriteHeader sets the status; only the first call counts. Codes
	// below 200 are not allowed (the server sends 100 Continue itself).
	WriteHeader(code int)
	// Write appends to the body, calling WriteHeader(200) if needed.
	Write(p []byte) (int, error)
	// Flush sends the head and everything written so far to the client.
	Flush() error
}

var (
	// ErrBodyNotAllowed is returned by Write for a status that has no
	// body, such as 204.
	ErrBodyNotAllowed = errors.New("httpd: this status has no body")
	// ErrContentLength is returned by Write beyond the Content-Length the
	// handler declared.
	ErrContentLength = errors.New("httpd: wrote more than the declared Content-Length")
)

// holdBytes is how much body a response holds back to give it a
// Content-Length; a bigger body goes out chunked.
const holdBytes = 16 << 10

type response struct {
	c      *conn
	req    *Request
	header Header

	status    int   // 0 until WriteHeader
	committed bool  // the head is in c.bw
	chunked   bool  // the body goes in chunked framing
	declared  int64 // Content-Length the handler set, or -1
	held      []byte
	written   int64 // body bytes the handler wrote
	head      bool  // answering HEAD: count the body, send none
	// closeAfter ends the connection after this response.
	closeAfter bool
	err        error  // the first write error; the connection is then dead
	now        []byte // chunks BufferNow holds for SendNow (NowWriter)
}

func newResponse(c *conn, req *Request) *response {
	w := &response{c: c, req: req, header: make(Header), declared: -1}
	if req != nil {
		w.head = req.Method == "HEAD"
		w.closeAfter = req.Close
	}
	return w
}

func (w *response) Header() Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 200 || code > 999 {
		panic(fmt.Sprintf("httpd: invalid response status %d", code))
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			w.header.Del("Content-Length") // the handler's mistake must not break the framing
		} else {
			w.declared = n
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowed(w.status) {
		return 0, ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, ErrContentLength
	}
	w.written += int64(len(p))
	if w.head {
		return len(p), nil
	}
	w.takeNow()
	if !w.committed {
		if w.declared < 0 && len(w.held)+len(p) <= holdBytes {
			w.held = append(w.held, p...)
			return len(p), nil
		}
		w.commit(false)
	}
	w.writeBody(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *response) Flush() error {
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	w.takeNow()
	if w.err == nil {
		w.err = w.c.flush()
	}
	return w.err
}

// commit writes the head, and the held body after it. final means the
// handler has returned, so the held body is all of it.
func (w *response) commit(final bool) {
	w.committed = true
	h := w.header
	h.Del("Transfer-Encoding") // framing is the server's business
	switch {
	case !bodyAllowed(w.status):
		h.Del("Content-Length")
	case w.declared >= 0:
	case final:
		h.Set("Content-Length", strconv.FormatInt(w.written, 10))
	case w.head:
		// The length is unknown and nothing will be sent: say neither.
	case w.req != nil && w.req.ProtoMinor == 0:
		w.closeAfter = true // the body ends when the connection does
	default:
		w.chunked = true
		h.Set("Transfer-Encoding", "chunked")
	}
	if w.c.stopping() {
		w.closeAfter = true // Serve is shutting down: this is the last response
	}
	if w.closeAfter {
		h.Set("Connection", "close")
	} else {
		h.Del("Connection")
	}
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(w.status))
	bw.WriteByte(' ')
	bw.WriteString(StatusText(w.status))
	bw.WriteString("\r\n")
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if !isToken(k) {
			continue
		}
		for _, v := range h[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			// A CR or LF in a value would let it start a header of its own.
			bw.WriteString(strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, v))
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	held := w.held
	w.held = nil
	if len(held) > 0 && !w.head {
		w.writeBody(held)
	}
}

func (w *response) writeBody(p []byte) {
	if w.err != nil || len(p) == 0 {
		return
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
		return
	}
	_, w.err = bw.Write(p)
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if w.status == 0 {
		w.WriteHeader(StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	w.takeNow()
	if w.chunked && w.err == nil {
		_, w.err = w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.declared >= 0 && w.written < w.declared && !w.head && bodyAllowed(w.status) {
		// The client waits for bytes that will never come.
		w.closeAfter = true
	}
	if w.err == nil {
		w.err = w.c.flush()
	}
	if w.err != nil {
		w.closeAfter = true
	}
}
