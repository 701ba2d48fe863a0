// Package httpd is a small, strict HTTP/1.1 server for meshd's control
// API: requests with Content-Length bodies, keep-alive and pipelining,
// Expect: 100-continue, responses with a Content-Length or, once a handler
// flushes, in chunks, and a router with {name} path segments.
//
// It exists so that meshd need not link net/http, which with crypto/tls
// and crypto/x509 was a third of the binary on a router with 8 MB of flash.
// It serves local programs on a Unix socket, not the web: no chunked
// request bodies (411), no HTTP/1.0 keep-alive, no absolute-form targets,
// no obsolete line folding, and limits on everything a client sends.
package httpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// Handler answers one request. The request's body and the ResponseWriter
// must not be used after ServeHTTP returns.
type Handler interface {
	ServeHTTP(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w ResponseWriter, r *Request) { f(w, r) }

// Server serves HTTP/1.1 on the connections of a listener. Set its fields
// before calling Serve and do not change them after.
type Server struct {
	Handler Handler
	// Limits bounds requests; the zero value means DefaultLimits.
	Limits Limits
	// ReadTimeout bounds how long a request's head and body may take to
	// arrive, from its first byte.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that has had no request for this
	// long, so idle keep-alive connections do not hold resources.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write of a response to the connection (the
	// head, each flush, the end): a client that stops reading is cut off,
	// while a stream that keeps moving may last for ever.
	WriteTimeout time.Duration
	// ShutdownTimeout is how long Serve waits, once its context is done,
	// for handlers to return before it closes their connections.
	ShutdownTimeout time.Duration
	// ConnContext, if set, derives the context of each connection's
	// requests from ctx, e.g. to attach what the kernel says about the
	// peer.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// Error writes the body of an error the server answers by itself: a
	// malformed or oversized request (r is nil then), a panicking handler,
	// an Expect it cannot meet. Nil means a text/plain message.
	Error func(w ResponseWriter, r *Request, code int, msg string)
	// Log receives handler panics at Error level and refused requests at
	// Debug level; nil discards.
	Log *slog.Logger
}

// Defaults for the zero Server fields.
const (
	DefaultReadTimeout     = 10 * time.Second
	DefaultIdleTimeout     = 2 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// aLongTimeAgo is a deadline in the past, set to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// serving is the state of one call of Serve.
type serving struct {
	*Server
	lim Limits
	log *slog.Logger

	mu       sync.Mutex
	stopping bool
	conns    map[*conn]struct{}
}

// Serve answers requests on ln until ctx is done or ln fails, then shuts
// down: it closes ln, closes idle connections, cancels the contexts of
// requests in progress (ending event streams), waits up to
// ShutdownTimeout for their handlers to return, then closes the remaining
// connections and waits for every goroutine it started. It returns nil
// after a shutdown caused by ctx, else the error from Accept.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	st := &serving{Server: s, lim: s.Limits, log: s.Log, conns: make(map[*conn]struct{})}
	if st.lim == (Limits{}) {
		st.lim = DefaultLimits
	}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	// Requests see ctx's values, but their cancellation comes from Serve,
	// after it has marked the server as stopping: a handler woken by it
	// then answers with Connection: close.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	var wg sync.WaitGroup
	accepted := make(chan error, 1)
	go func() {
		var backoff time.Duration
		for {
			nc, err := ln.Accept()
			if err != nil {
				if !retryable(err) {
					accepted <- err
					return
				}
				// Out of file descriptors or memory, or a client that
				// gave up before we took it: wait, then try again,
				// rather than end the control API.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				st.log.Warn("control API accept failed; retrying", "err", err, "in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
					continue
				case <-ctx.Done():
					t.Stop()
					accepted <- nil
					return
				}
			}
			backoff = 0
			c := st.newConn(nc)
			if c == nil {
				nc.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serve(base)
			}()
		}
	}()

	var acceptErr error
	select {
	case <-ctx.Done():
		ln.Close()
		<-accepted
	case acceptErr = <-accepted:
		ln.Close()
	}
	if ctx.Err() != nil {
		acceptErr = nil // the accept failed because Serve closed ln
	}
	st.stop()
	cancel()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(or(s.ShutdownTimeout, DefaultShutdownTimeout))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		st.log.Warn("control API requests did not finish in time; closing their connections")
		st.closeAll()
		<-done
	}
	if acceptErr != nil {
		return fmt.Errorf("httpd: accept on %s: %w", ln.Addr(), acceptErr)
	}
	return nil
}

// retryable reports whether an Accept error is a passing shortage rather
// than the end of the listener.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (st *serving) newConn(nc net.Conn) *conn {
	c := &conn{st: st, nc: nc, idle: true}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopping {
		return nil
	}
	st.conns[c] = struct{}{}
	return c
}

// stop marks the server as shutting down and wakes the reads of idle
// connections, which then close.
func (st *serving) stop() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.stopping = true
	for c := range st.conns {
		if c.idle {
			c.nc.SetReadDeadline(aLongTimeAgo)
		}
	}
}

func (st *serving) closeAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for c := range st.conns {
		c.nc.Close()
	}
}

// conn is one client connection, served by one goroutine.
type conn struct {
	st *serving
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// raw writes to the socket without waiting (NowWriter), with nw's
	// state; both set at the first use.
	raw syscall.RawConn
	nw  *nowWrite

	idle bool // between requests; guarded by st.mu

	// The watch goroutine waits for the client to go away while a handler
	// runs, and cancels the request when it does.
	watching  bool
	watchDone chan struct{}
	gone      bool // the watch saw the connection end
}

// setIdle sets the connection's state and, with it, its read deadline, in
// one step under the server's lock, so that stop's wake-up cannot be
// overwritten. It returns false if the server is stopping.
func (c *conn) setIdle(idle bool, deadline time.Time) bool {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if c.st.stopping {
		return false
	}
	c.idle = idle
	c.nc.SetReadDeadline(deadline)
	return true
}

// stopping reports whether Serve is shutting down.
func (c *conn) stopping() bool {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	return c.st.stopping
}

func (c *conn) serve(base context.Context) {
	defer func() {
		c.st.mu.Lock()
		delete(c.st.conns, c)
		c.st.mu.Unlock()
		c.nc.Close()
	}()
	ctx := base
	if c.st.ConnContext != nil {
		ctx = c.st.ConnContext(ctx, c.nc)
	}
	c.br = bufio.NewReaderSize(c.nc, 4<<10)
	c.bw = bufio.NewWriterSize(c.nc, 4<<10)
	for {
		if !c.setIdle(true, time.Now().Add(or(c.st.IdleTimeout, DefaultIdleTimeout))) {
			return
		}
		if _, err := c.br.Peek(1); err != nil {
			return // closed, idle too long, or shutting down
		}
		// One deadline for the head and the body together.
		deadline := time.Now().Add(or(c.st.ReadTimeout, DefaultReadTimeout))
		if !c.setIdle(true, deadline) {
			return
		}
		req, err := readRequest(c.br, c.st.lim)
		if err != nil {
			c.refuse(err)
			return
		}
		if !c.setIdle(false, deadline) {
			return
		}
		if !c.serveRequest(ctx, req) {
			return
		}
	}
}

// refuse answers a request readRequest would not accept, if the client can
// still be told, and lets the caller close the connection.
func (c *conn) refuse(err error) {
	var pe *protoError
	if !errors.As(err, &pe) {
		// EOF or a timeout inside the head: nobody to answer, or a client
		// too slow to deserve more of our time.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			c.st.log.Debug("control connection dropped while reading a request", "err", err)
		}
		return
	}
	c.st.log.Debug("refused a control request", "status", pe.code, "err", pe.msg)
	w := newResponse(c, nil)
	w.closeAfter = true
	c.st.writeError(w, nil, pe.code, pe.msg)
	w.finish()
	c.lingerClose()
}

// lingerClose half-closes the connection and reads what the client still
// sends for a moment, so that closing with unread request bytes does not
// reset the connection before the client has read our answer.
func (c *conn) lingerClose() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.nc, 256<<10)
}

func (st *serving) writeError(w ResponseWriter, r *Request, code int, msg string) {
	if st.Error != nil {
		st.Error(w, r, code, msg)
		return
	}
	plainError(w, code, msg)
}

// serveRequest runs the handler for req and completes its response. It
// reports whether the connection may carry another request.
func (c *conn) serveRequest(base context.Context, req *Request) (keep bool) {
	ctx, cancel := context.WithCancel(base)
	defer cancel()
	req.ctx = ctx
	w := newResponse(c, req)
	b := &body{c: c, w: w, n: req.ContentLength, cont: req.expectContinue, cancel: cancel}
	req.Body = b
	if b.n == 0 {
		c.startWatch(cancel)
	}

	panicked := c.runHandler(w, req)
	b.cancel = nil // the handler is done: no more watching
	c.stopWatch()
	if panicked {
		w.closeAfter = true
		if w.committed {
			// Part of the response is out; a truncated one, then the
			// close, tells the client it broke.
			c.bw.Flush()
			return false
		}
		w = newResponse(c, req)
		w.closeAfter = true
		c.st.writeError(w, req, StatusInternalServerError, "internal error: the request made meshd fail; see its log")
	}
	if b.n > 0 {
		if b.cont {
			// The client waits for 100 Continue, or has given up waiting
			// and is sending the body: only closing is unambiguous.
			w.closeAfter = true
		} else if _, err := io.Copy(io.Discard, b); err != nil {
			w.closeAfter = true
		}
	}
	if c.gone {
		// The client closed its side; it may still read the answer (a
		// half-close), but it will send nothing more.
		w.closeAfter = true
	}
	w.finish()
	return !w.closeAfter
}

// runHandler calls the handler and reports whether it panicked.
func (c *conn) runHandler(w *response, req *Request) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			c.st.log.Error("control API handler panicked", "method", req.Method, "path", req.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
		}
	}()
	c.st.Handler.ServeHTTP(w, req)
	return false
}

// startWatch waits, in the background, for the client to close the
// connection, and then cancels the request: a handler streaming events
// would otherwise only notice at its next write. It runs only once the
// request body has been read, since it reads from the same buffer; bytes
// it reads (a pipelined next request) stay buffered for the next request.
func (c *conn) startWatch(cancel context.CancelFunc) {
	if c.br.Buffered() > 0 {
		return // the next request is already here, so the client is too
	}
	c.nc.SetReadDeadline(time.Time{})
	c.watching = true
	c.watchDone = make(chan struct{})
	go func() {
		defer close(c.watchDone)
		if _, err := c.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.gone = true
			cancel()
		}
	}()
}

// stopWatch ends the watch goroutine and waits for it.
func (c *conn) stopWatch() {
	if !c.watching {
		return
	}
	c.watching = false
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-c.watchDone
}

// flush sends what c.bw holds, bounded by the write timeout.
func (c *conn) flush() error {
	c.nc.SetWriteDeadline(time.Now().Add(or(c.st.WriteTimeout, DefaultWriteTimeout)))
	return c.bw.Flush()
}

// body reads a request body of n bytes from the connection.
type body struct {
	c      *conn
	w      *response
	n      int64              // bytes left
	cont   bool               // 100 Continue is owed before the first read
	cancel context.CancelFunc // the request's, while its handler runs
}

func (b *body) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if b.cont {
		b.cont = false
		if !b.w.committed {
			b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := b.c.flush(); err != nil {
				return 0, err
			}
		}
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		if b.cancel != nil {
			b.c.startWatch(b.cancel)
		}
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
