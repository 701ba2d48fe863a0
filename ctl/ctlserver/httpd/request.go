package httpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Request is one parsed HTTP/1.x request.
type Request struct {
	Method     string
	RequestURI string   // the request-target as received, e.g. "/v0/events?room=a"
	URL        *url.URL // RequestURI parsed; only Path, RawPath and RawQuery are set
	ProtoMinor int      // 0 for HTTP/1.0, 1 for HTTP/1.1
	Header     Header
	// ContentLength is the length of Body: the request's Content-Length,
	// or 0 without one.
	ContentLength int64
	// Body reads the request body; it is never nil and returns io.EOF
	// after ContentLength bytes.
	Body io.Reader
	// Close is set when the client asked to close the connection after
	// this request (Connection: close, or HTTP/1.0).
	Close bool

	expectContinue bool
	ctx            context.Context
	params         []param
}

type param struct{ name, value string }

// Context returns the request's context. It is cancelled when the client
// closes its connection, when the handler returns, or when the server
// shuts down.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// PathValue returns the value of the {name} segment of the route that
// matched r, unescaped, or "" if there is none.
func (r *Request) PathValue(name string) string {
	for _, p := range r.params {
		if p.name == name {
			return p.value
		}
	}
	return ""
}

// Limits bound what a client may send; a request over any of them is
// refused before it is buffered.
type Limits struct {
	HeadBytes int   // request line and header fields together, CRLFs included
	Headers   int   // header fields
	BodyBytes int64 // Content-Length
}

// DefaultLimits are far above anything meshctl or curl sends to the
// control API.
var DefaultLimits = Limits{HeadBytes: 16 << 10, Headers: 64, BodyBytes: 64 << 10}

// protoError is a request the server refuses before any handler sees it.
// The connection is closed after the answer, since the server cannot tell
// where the next request would begin.
type protoError struct {
	code int
	msg  string
}

func (e *protoError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

func badRequest(format string, a ...any) error {
	return &protoError{StatusBadRequest, fmt.Sprintf(format, a...)}
}

// readRequest reads one request head from br and checks it. It returns
// io.EOF if the connection closed before the first byte, and a
// *protoError for a request that must be refused. Body is left for the
// caller to set.
func readRequest(br *bufio.Reader, lim Limits) (*Request, error) {
	budget := lim.HeadBytes
	line, err := readLine(br, &budget, lim)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		// RFC 9112, 2.2: a server SHOULD ignore at least one empty line
		// before the request line; some clients send CRLF after a body.
		if line, err = readLine(br, &budget, lim); err != nil {
			return nil, noEOF(err)
		}
	}
	r := &Request{Header: make(Header)}
	if err := r.parseRequestLine(string(line)); err != nil {
		return nil, err
	}
	n := 0
	for {
		line, err := readLine(br, &budget, lim)
		if err != nil {
			return nil, noEOF(err)
		}
		if len(line) == 0 {
			break
		}
		if n++; n > lim.Headers {
			return nil, &protoError{StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request has more than %d header fields", lim.Headers)}
		}
		if err := r.parseField(line); err != nil {
			return nil, err
		}
	}
	return r, r.checkHead(lim)
}

// noEOF turns an EOF inside a request head into ErrUnexpectedEOF, so that
// only a connection closed between requests reads as a clean io.EOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLine returns the next line without its CRLF, charging it to budget.
// The slice is valid until the next read from br.
func readLine(br *bufio.Reader, budget *int, lim Limits) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > *budget {
			return nil, &protoError{StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request head is larger than the limit of %d bytes", lim.HeadBytes)}
		}
		*budget -= len(frag)
		switch {
		case err == nil && line == nil:
			line = frag
		case err == nil || errors.Is(err, bufio.ErrBufferFull):
			line = append(line, frag...)
		default:
			if len(frag) > 0 || line != nil {
				return nil, noEOF(err)
			}
			return nil, err
		}
		if err == nil {
			break
		}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, badRequest("request head has a line that does not end in CRLF")
	}
	return line[:len(line)-2], nil
}

func (r *Request) parseRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) {
		return badRequest("malformed request line %q: want METHOD /path HTTP/1.1", clip(line))
	}
	switch proto {
	case "HTTP/1.1":
		r.ProtoMinor = 1
	case "HTTP/1.0":
		r.ProtoMinor = 0
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return &protoError{StatusHTTPVersionNotSupported, fmt.Sprintf("%s is not supported: use HTTP/1.1", proto)}
		}
		return badRequest("malformed request line %q: want METHOD /path HTTP/1.1", clip(line))
	}
	// Only the origin form: a local API has no use for proxy requests
	// (absolute form), CONNECT (authority form) or OPTIONS * (asterisk).
	if target == "" || target[0] != '/' {
		return badRequest("request target %q must be a path such as /v0/status", clip(target))
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return badRequest("request target %q holds a character that must be percent-encoded", clip(target))
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return badRequest("request target %q is not a valid path: %v", clip(target), err)
	}
	r.Method, r.RequestURI, r.URL = method, target, u
	return nil
}

func (r *Request) parseField(line []byte) error {
	if line[0] == ' ' || line[0] == '\t' {
		return badRequest("header field continued on a new line (obsolete line folding) is not allowed")
	}
	i := 0
	for i < len(line) && line[i] != ':' {
		i++
	}
	name := string(line[:i])
	if i == len(line) || !isToken(name) {
		return badRequest("malformed header field %q: want Name: value", clip(string(line)))
	}
	v := line[i+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return badRequest("header field %s holds a control character", name)
		}
	}
	r.Header.Add(name, string(v))
	return nil
}

// checkHead applies the rules that span several fields: Host, message
// framing, Expect and Connection.
func (r *Request) checkHead(lim Limits) error {
	if hosts := r.Header["Host"]; r.ProtoMinor == 1 && len(hosts) != 1 {
		return badRequest("an HTTP/1.1 request needs exactly one Host header field, not %d", len(hosts))
	}
	if te, ok := r.Header["Transfer-Encoding"]; ok {
		if slicesContainsFold(te, "chunked") {
			return &protoError{StatusLengthRequired, "chunked request bodies are not supported: send the body with Content-Length"}
		}
		return &protoError{StatusNotImplemented, fmt.Sprintf("Transfer-Encoding %q is not supported: send the body with Content-Length", clip(strings.Join(te, ", ")))}
	}
	if cl, ok := r.Header["Content-Length"]; ok {
		if len(cl) != 1 {
			return badRequest("request has %d Content-Length header fields: send one", len(cl))
		}
		n, err := parseContentLength(cl[0])
		if err != nil {
			return err
		}
		if n > lim.BodyBytes {
			return &protoError{StatusContentTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes", lim.BodyBytes)}
		}
		r.ContentLength = n
	}
	if exp, ok := r.Header["Expect"]; ok {
		if len(exp) != 1 || !strings.EqualFold(exp[0], "100-continue") {
			return &protoError{StatusExpectationFailed, fmt.Sprintf("Expect %q is not supported: only 100-continue is", clip(strings.Join(exp, ", ")))}
		}
		r.expectContinue = r.ProtoMinor == 1 && r.ContentLength > 0
	}
	// HTTP/1.0 keep-alive is an old extension nobody needs here: a 1.0
	// client gets one response per connection.
	r.Close = r.ProtoMinor == 0 || slicesContainsFold(r.Header["Connection"], "close")
	return nil
}

func parseContentLength(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, badRequest("Content-Length %q is not a byte count", clip(s))
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, badRequest("Content-Length %q is not a byte count", clip(s))
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// slicesContainsFold reports whether any comma-separated element of vs is
// tok, ignoring case.
func slicesContainsFold(vs []string, tok string) bool {
	for _, v := range vs {
		for e := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(e), tok) {
				return true
			}
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// clip shortens what a client sent before it is echoed in an error, so a
// 16 KiB header does not come back in full.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
