package ctl

// A minimal HTTP/1.1 client for the control socket. net/http would do,
// but it links crypto/tls, crypto/x509 and HTTP/2 into every front end,
// about half of meshctl's size, for a router that has 8 MB of flash in
// all. The control API needs little of HTTP: one request per connection,
// JSON bodies, and answers framed by Content-Length, by chunks (the event
// stream) or by the end of the connection.

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
)

// Limits on what the client reads of an answer's head, so that whatever
// owns the socket cannot make a front end allocate without bound.
const (
	maxLineBytes   = 8 << 10
	maxHeaderCount = 100
)

// response is an answer's status and body; Body ends the connection when
// closed.
type response struct {
	StatusCode int
	Status     string // e.g. "404 Not Found", as the server wrote it
	Header     map[string]string
	Body       io.ReadCloser
}

// roundTrip sends one request on its own connection and reads the answer's
// head. The connection lives until the body is closed or ctx ends,
// whichever comes first; ctx ending breaks any read in progress.
func roundTrip(ctx context.Context, socket, method, path string, payload []byte) (*response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, dialError(socket, err)
	}
	// Closing the connection is the one way to interrupt a blocked read
	// or write; stop tells whether it already happened.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(err error) (*response, error) {
		stop()
		conn.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}

	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: meshctl\r\n", method, path, Host)
	if payload != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(payload))
	}
	req.WriteString("\r\n")
	req.Write(payload)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return fail(fmt.Errorf("send request: %w", err))
	}

	br := bufio.NewReader(conn)
	resp, err := readHead(br)
	if err != nil {
		return fail(err)
	}
	r, err := framed(br, resp.Header)
	if err != nil {
		return fail(err)
	}
	resp.Body = &body{r: r, conn: conn, stop: stop, ctx: ctx}
	return resp, nil
}

// framed returns a reader of the body that follows an answer's head in br,
// as its headers frame it.
func framed(br *bufio.Reader, header map[string]string) (io.Reader, error) {
	switch te := strings.ToLower(header["transfer-encoding"]); {
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
// error; Close ends the connection.
type body struct {
	r    io.Reader
	conn net.Conn
	stop func() bool
	ctx  context.Context
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
	b.stop()
	return b.conn.Close()
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
