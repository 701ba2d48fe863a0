package ctl

// A minimal HTTP/1.1 client for the control socket. net/http would do,
// but it links crypto/tls, crypto/x509 and HTTP/2 into every front end,
// about half of meshctl's size, for a router that has 8 MB of flash in
// all. The control API needs little of HTTP: JSON bodies, and answers
// framed by Content-Length, by chunks (the event stream) or by the end of
// the connection; connections kept alive between requests.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits on what the client reads of an answer's head, so that whatever
// owns the socket cannot make a front end allocate without bound.
const (
	maxLineBytes   = 8 << 10
	maxHeaderCount = 100
)

// Kept connections. A front end that sends many requests (a bridge, a
// paste, the benchmark harness: one say per line) would otherwise pay a
// connect, an accept and a server goroutine for each, about a third of
// what a say costs the daemon at full rate. A connection idle for
// keepIdle is closed: half the server's idle timeout (2 s), so that the
// server never closes one just as a request is sent on it, and a Client
// nobody uses holds no sockets for long.
const (
	keepIdle = time.Second
	// maxKeep bounds the connections one Client keeps idle; the server
	// serves 64 at once.
	maxKeep = 32
	// maxDrain is how much of an unread Content-Length body Close reads to
	// keep the connection; a larger remainder is cheaper to drop.
	maxDrain = 4 << 10
)

// response is an answer's status and body; Body ends the connection, or
// keeps it for the next request, when closed.
type response struct {
	StatusCode int
	Status     string // e.g. "404 Not Found", as the server wrote it
	Header     map[string]string
	Body       io.ReadCloser
}

// conn is a connection to the control socket and its reader.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader
	idleSince time.Time
}

// pool keeps a Client's idle connections, the most recently used last.
// The zero value is ready for use.
type pool struct {
	mu    sync.Mutex
	idle  []*conn
	sweep *time.Timer // closes connections idle for keepIdle; armed while any are
}

// get returns a kept connection that has been idle less than keepIdle, or
// nil.
func (p *pool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if time.Since(c.idleSince) < keepIdle {
			return c
		}
		c.nc.Close()
	}
	return nil
}

// put keeps c for the next request.
func (p *pool) put(c *conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == maxKeep {
		c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(keepIdle, p.expire)
	} else if len(p.idle) == 1 {
		p.sweep.Reset(keepIdle)
	}
}

// expire closes the connections idle for keepIdle and, while others are
// kept, looks again when the oldest of them expires.
func (p *pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for _, c := range p.idle {
		if now.Sub(c.idleSince) >= keepIdle {
			c.nc.Close()
			continue
		}
		p.idle[n] = c
		n++
	}
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 {
		p.sweep.Reset(keepIdle - now.Sub(p.idle[0].idleSince))
	}
}

// roundTrip sends one request, on a kept connection if there is one, and
// reads the answer's head. The connection lives until the body is closed
// or ctx ends, whichever comes first; ctx ending breaks any read in
// progress.
//
// A kept connection the server has closed (it was shutting down) fails
// before any of the answer arrives; then the request is sent once more on
// a new connection. That cannot do a request twice: the control server
// closes a connection without answering only while it waits for the next
// request, never once it has read one.
func (p *pool) roundTrip(ctx context.Context, socket, method, path string, payload []byte) (*response, error) {
	req := make([]byte, 0, 160+len(payload))
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "+Host+"\r\nUser-Agent: meshctl\r\n"...)
	if payload != nil {
		req = append(req, "Content-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(payload)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, payload...)

	if c := p.get(); c != nil {
		resp, err := p.exchange(ctx, c, req, true)
		if !errors.Is(err, errStale) {
			return resp, err
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, dialError(socket, err)
	}
	return p.exchange(ctx, &conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10)}, req, false)
}

// errStale is exchange's report that a kept connection had been closed
// by the server before it took the request.
var errStale = errors.New("kept connection closed by the server")

// exchange writes req on c and reads the answer's head.
func (p *pool) exchange(ctx context.Context, c *conn, req []byte, kept bool) (*response, error) {
	// Closing the connection is the one way to interrupt a blocked read
	// or write; stop tells whether it already happened.
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	fail := func(err error) (*response, error) {
		stop()
		c.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if _, err := c.nc.Write(req); err != nil {
		if kept && ctx.Err() == nil {
			stop()
			c.nc.Close()
			return nil, errStale
		}
		return fail(fmt.Errorf("send request: %w", err))
	}
	if _, err := c.br.Peek(1); err != nil && kept && ctx.Err() == nil && closedByPeer(err) {
		stop()
		c.nc.Close()
		return nil, errStale
	}
	resp, err := readHead(c.br)
	if err != nil {
		return fail(err)
	}
	r, err := framed(c.br, resp)
	if err != nil {
		return fail(err)
	}
	b := &body{r: r, c: c, pool: p, stop: stop, ctx: ctx}
	// The connection may carry another request once this answer is read,
	// if its end is framed and the server did not say it is the last.
	_, b.keep = r.(*exactReader)
	if _, ok := r.(*chunkedReader); ok {
		b.keep = true
	}
	if strings.EqualFold(resp.Header["connection"], "close") {
		b.keep = false
	}
	resp.Body = b
	return resp, nil
}

// closedByPeer reports whether err is the end of a connection the other
// side closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// framed returns a reader of the body that follows an answer's head in br,
// as its status and headers frame it.
func framed(br *bufio.Reader, resp *response) (io.Reader, error) {
	header := resp.Header
	switch te := strings.ToLower(header["transfer-encoding"]); {
	case resp.StatusCode == 204 || resp.StatusCode == 304:
		// No body, whatever the headers say (RFC 9112 §6.3).
		return &exactReader{r: br}, nil
	case te == "chunked":
		return &chunkedReader{r: br}, nil
	case te != "":
		return nil, fmt.Errorf("unsupported transfer encoding %q", te)
	case header["content-length"] != "":
		n, err := strconv.ParseInt(header["content-length"], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", header["content-length"])
		}
		return &exactReader{r: br, n: n}, nil
	default:
		// No framing: the body ends with the connection.
		return br, nil
	}
}

// readHead reads the status line and headers of an answer, skipping
// informational (1xx) answers. Header names are lower-cased; a repeated
// header keeps its last value, which is all the client needs.
func readHead(br *bufio.Reader) (*response, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, fmt.Errorf("read answer: %w", err)
		}
		proto, status, ok := strings.Cut(line, " ")
		code := 0
		if ok && strings.HasPrefix(proto, "HTTP/1.") && len(status) >= 3 {
			code, err = strconv.Atoi(status[:3])
		}
		if code < 100 || code > 999 || err != nil {
			return nil, fmt.Errorf("malformed status line %q", line)
		}
		resp := &response{StatusCode: code, Status: status, Header: make(map[string]string)}
		for n := 0; ; n++ {
			line, err := readLine(br)
			if err != nil {
				return nil, fmt.Errorf("read answer headers: %w", err)
			}
			if line == "" {
				break
			}
			if n == maxHeaderCount {
				return nil, fmt.Errorf("more than %d headers in answer", maxHeaderCount)
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("malformed header line %q", line)
			}
			resp.Header[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		if code >= 200 {
			return resp, nil
		}
	}
}

// readLine reads a CRLF- or LF-terminated line of at most maxLineBytes,
// without its terminator.
func readLine(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > maxLineBytes {
			return "", fmt.Errorf("line longer than %d bytes", maxLineBytes)
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
			return string(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// body is an answer's body. Reading past a cancelled ctx reports ctx's
// error; Close keeps the connection for the next request if the answer
// was read to its end, and ends it otherwise.
type body struct {
	r      io.Reader
	c      *conn
	pool   *pool
	keep   bool // the connection may carry another request after this answer
	closed bool
	stop   func() bool
	ctx    context.Context
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	keep := b.keep
	switch r := b.r.(type) {
	case *exactReader:
		// A decoder may stop short of the body's end (the newline after a
		// JSON value); what is left of a small body is read, not wasted.
		if keep && r.n > 0 && r.n <= maxDrain {
			_, err := io.Copy(io.Discard, r)
			keep = err == nil
		}
		keep = keep && r.n == 0
	case *chunkedReader:
		keep = keep && r.done
	}
	// stop false: ctx ended and closed the connection.
	if !b.stop() || !keep || b.c.br.Buffered() > 0 {
		return b.c.nc.Close()
	}
	b.pool.put(b.c)
	return nil
}

// exactReader reads a body of n bytes; a connection that ends sooner is
// an error, not a short body.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if errors.Is(err, io.EOF) && e.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && e.n == 0 {
		err = io.EOF
	}
	return n, err
}

// chunkedReader decodes a chunked body (RFC 9112 §7.1): hex sizes with
// optional extensions, data, CRLF; a zero size and trailers end it.
type chunkedReader struct {
	r    *bufio.Reader
	left int64 // bytes left in the current chunk
	done bool
	err  error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.err == nil && c.left == 0 && !c.done {
		c.err = c.next()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
		return n, err
	}
	if c.left == 0 {
		// The CRLF after the chunk's data.
		if line, err := readLine(c.r); err != nil || line != "" {
			c.err = errors.Join(errors.New("malformed chunk end"), err)
		}
	}
	return n, nil
}

// next reads a chunk-size line, or at the last chunk the trailers.
func (c *chunkedReader) next() error {
	line, err := readLine(c.r)
	if err != nil {
		return fmt.Errorf("read chunk size: %w", err)
	}
	hexSize, _, _ := strings.Cut(line, ";")
	hexSize = strings.TrimSpace(hexSize)
	// 15 hex digits keep the size within an int64.
	if hexSize == "" || len(hexSize) > 15 {
		return fmt.Errorf("malformed chunk size %q", line)
	}
	size, err := strconv.ParseInt(hexSize, 16, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("malformed chunk size %q", line)
	}
	if size > 0 {
		c.left = size
		return nil
	}
	for n := 0; ; n++ {
		line, err := readLine(c.r)
		if err != nil {
			return fmt.Errorf("read trailers: %w", err)
		}
		if line == "" {
			c.done = true
			return nil
		}
		if n == maxHeaderCount {
			return fmt.Errorf("more than %d trailers", maxHeaderCount)
		}
	}
}
