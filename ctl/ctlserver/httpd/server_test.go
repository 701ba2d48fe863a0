package httpd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl/ctlserver/httpd"
	"meshd/internal/leaktest"
)

// testServer runs s on a Unix socket until the test ends.
type testServer struct {
	path string
	stop func() error
}

func start(t *testing.T, s *httpd.Server) *testServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Error == nil {
		s.Error = jsonError
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		leaktest.Check(t, "meshd/ctl/ctlserver/httpd.")
	})
	return &testServer{path: path, stop: stop}
}

func jsonError(w httpd.ResponseWriter, _ *httpd.Request, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// rawConn is a client connection that writes bytes as given and reads
// responses with net/http's parser, which is strict about framing.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

type resp struct {
	*http.Response
	body string
}

func (rc *rawConn) read(method string) resp {
	rc.t.Helper()
	r, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Fatalf("read response body: %v", err)
	}
	return resp{r, string(b)}
}

// closed checks that the server closes the connection with nothing more
// to say.
func (rc *rawConn) closed() {
	rc.t.Helper()
	if b, err := rc.br.ReadByte(); err != io.EOF {
		rc.t.Errorf("after the response: read %q, %v; want the connection closed", b, err)
	}
}

const get = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"

func echo(w httpd.ResponseWriter, r *httpd.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(httpd.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, b)
}

func TestKeepAliveAndPipelining(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(echo)})
	rc := ts.dial(t)
	// Three requests in one write: the server must answer each in order
	// and leave the bytes of the next one alone.
	rc.send(get + "POST /y HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + "GET /z HTTP/1.1\r\nHost: t\r\n\r\n")
	for _, want := range []string{`GET /x ""`, `POST /y "hello"`, `GET /z ""`} {
		r := rc.read("GET")
		if r.StatusCode != 200 || r.body != want || r.ContentLength != int64(len(want)) || r.Close {
			t.Errorf("response %d %q (length %d, close %v), want 200 %q with its length, kept alive",
				r.StatusCode, r.body, r.ContentLength, r.Close, want)
		}
	}
	// The connection is still good for another request later.
	rc.send("POST /w HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\n!")
	if r := rc.read("POST"); r.body != `POST /w "!"` || !r.Close {
		t.Errorf("last response %q close=%v, want the echo and Connection: close", r.body, r.Close)
	}
	rc.closed()
}

func TestUnreadBodyIsSkipped(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		io.WriteString(w, r.URL.Path)
	})})
	rc := ts.dial(t)
	rc.send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nignored" + get)
	if r := rc.read("POST"); r.body != "/a" {
		t.Errorf("first body %q", r.body)
	}
	if r := rc.read("GET"); r.body != "/x" {
		t.Errorf("second body %q, want /x: the unread body must not be taken for a request", r.body)
	}
}

func TestHTTP10(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(echo)})
	rc := ts.dial(t)
	rc.send("GET /old HTTP/1.0\r\n\r\n")
	if r := rc.read("GET"); r.body != `GET /old ""` || !r.Close {
		t.Errorf("HTTP/1.0: %q close=%v, want the echo and a close", r.body, r.Close)
	}
	rc.closed()
}

func TestStreaming(t *testing.T) {
	next := make(chan struct{})
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(httpd.StatusOK)
		if err := w.Flush(); err != nil {
			return
		}
		for i := range 3 {
			fmt.Fprintf(w, "{\"n\":%d}\n", i)
			if err := w.Flush(); err != nil {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})})
	rc := ts.dial(t)
	rc.send(get + get)
	r, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" || r.ContentLength != -1 {
		t.Errorf("streamed response: Transfer-Encoding %v, length %d; want chunked", r.TransferEncoding, r.ContentLength)
	}
	lines := bufio.NewReader(r.Body)
	for i := range 3 {
		// Each line arrives while the handler waits: Flush sent it.
		line, err := lines.ReadString('\n')
		if want := fmt.Sprintf("{\"n\":%d}\n", i); err != nil || line != want {
			t.Fatalf("line %d = %q, %v; want %q", i, line, err, want)
		}
		next <- struct{}{}
	}
	if rest, err := io.ReadAll(lines); err != nil || len(rest) != 0 {
		t.Errorf("after the last line: %q, %v; want the chunked body to end", rest, err)
	}
	// The second, pipelined request is answered on the same connection.
	go func() { next <- struct{}{}; next <- struct{}{}; next <- struct{}{} }()
	if r := rc.read("GET"); r.StatusCode != 200 || !strings.HasPrefix(r.body, `{"n":0}`) {
		t.Errorf("pipelined request after a stream: %d %q", r.StatusCode, r.body)
	}
}

func TestLargeBodyIsChunked(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4<<10) // 64 KiB, above what is held back
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		io.WriteString(w, big)
	})})
	rc := ts.dial(t)
	rc.send(get)
	if r := rc.read("GET"); r.body != big || r.ContentLength != -1 {
		t.Errorf("large body: %d bytes, length %d; want %d bytes, chunked", len(r.body), r.ContentLength, len(big))
	}
}

func TestResponseFraming(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(httpd.StatusNoContent)
			if _, err := w.Write([]byte("x")); !errors.Is(err, httpd.ErrBodyNotAllowed) {
				panic("a 204 took a body")
			}
		case "/declared":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "abc")
			io.WriteString(w, "de")
			if _, err := io.WriteString(w, "f"); !errors.Is(err, httpd.ErrContentLength) {
				panic("wrote past Content-Length")
			}
		case "/short":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "abc")
		case "/inject":
			w.Header().Set("X-A", "a\r\nX-Injected: 1")
		default:
			io.WriteString(w, "body")
		}
	})})
	rc := ts.dial(t)
	rc.send("GET /204 HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := rc.read("GET"); r.StatusCode != 204 || r.Header.Get("Content-Length") != "" || r.body != "" {
		t.Errorf("204: %d %q length %q", r.StatusCode, r.body, r.Header.Get("Content-Length"))
	}
	rc.send("GET /declared HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := rc.read("GET"); r.body != "abcde" || r.ContentLength != 5 {
		t.Errorf("declared length: %q, %d", r.body, r.ContentLength)
	}
	rc.send("GET /inject HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := rc.read("GET"); r.Header.Get("X-Injected") != "" || r.Header.Get("X-A") != "a  X-Injected: 1" {
		t.Errorf("CRLF in a header value: X-A %q, X-Injected %q", r.Header.Get("X-A"), r.Header.Get("X-Injected"))
	}
	rc.send("HEAD /any HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := rc.read("HEAD"); r.StatusCode != 200 || r.ContentLength != 4 || r.body != "" {
		t.Errorf("HEAD: %d, length %d, body %q; want 200, the GET's length, no body", r.StatusCode, r.ContentLength, r.body)
	}
	// The client would wait for the missing bytes; only closing ends that.
	rc.send("GET /short HTTP/1.1\r\nHost: t\r\n\r\n")
	r, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r.Body); string(b) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body: %q, %v; want abc cut off by the close", b, err)
	}
}

func TestRefusedRequests(t *testing.T) {
	called := false
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) { called = true })})
	tests := []struct {
		name, in string
		code     int
		inMsg    string
	}{
		{"junk", "hello\r\n\r\n", 400, "malformed request line"},
		{"body too large", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("x", 70000), 413, "larger than the limit of 65536 bytes"},
		{"head too large", "GET / HTTP/1.1\r\nHost: t\r\nX: " + strings.Repeat("x", 17<<10) + "\r\n\r\n", 431, "16384"},
		{"chunked", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411, "send the body with Content-Length"},
		{"version", "GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505, "use HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := ts.dial(t)
			go io.WriteString(rc.c, tt.in) // the server may answer before it reads everything
			r := rc.read("GET")
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(r.body), &e); err != nil {
				t.Fatalf("body %q is not the Error hook's JSON: %v", r.body, err)
			}
			if r.StatusCode != tt.code || !strings.Contains(e.Error, tt.inMsg) || !r.Close {
				t.Errorf("%d %q close=%v, want %d containing %q and a close", r.StatusCode, e.Error, r.Close, tt.code, tt.inMsg)
			}
			rc.closed()
		})
	}
	if called {
		t.Error("the handler saw a refused request")
	}
}

func TestExpectContinue(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(httpd.StatusForbidden)
			return
		}
		echo(w, r)
	})})
	rc := ts.dial(t)
	rc.send("POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if r := rc.read("POST"); r.StatusCode != 100 {
		t.Fatalf("first answer %d, want 100 Continue", r.StatusCode)
	}
	rc.send("hi")
	if r := rc.read("POST"); r.StatusCode != 200 || r.body != `POST /e "hi"` {
		t.Errorf("after 100 Continue: %d %q", r.StatusCode, r.body)
	}
	// A handler that answers without reading gets no 100 sent; the
	// connection then closes, since the body may or may not follow.
	rc.send("POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if r := rc.read("POST"); r.StatusCode != 403 || !r.Close {
		t.Errorf("refused upload: %d close=%v, want 403 and a close", r.StatusCode, r.Close)
	}
	rc.closed()
}

func TestPanic(t *testing.T) {
	var logBuf syncBuffer
	ts := start(t, &httpd.Server{
		Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
			w.Header().Set("X-Partial", "1")
			io.WriteString(w, "half")
			panic("handler bug")
		}),
		Log: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	rc := ts.dial(t)
	rc.send(get + get)
	r := rc.read("GET")
	if r.StatusCode != 500 || !r.Close || r.Header.Get("X-Partial") != "" || !strings.Contains(r.body, "internal error") {
		t.Errorf("panic: %d %q close=%v X-Partial=%q; want a fresh 500 and a close", r.StatusCode, r.body, r.Close, r.Header.Get("X-Partial"))
	}
	rc.closed()
	if log := logBuf.String(); !strings.Contains(log, "handler bug") || !strings.Contains(log, "server_test.go") {
		t.Errorf("log %q, want the panic and its stack", log)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestClientGoneCancelsRequest(t *testing.T) {
	ended := make(chan error, 1)
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		io.ReadAll(r.Body)
		w.Flush()
		<-r.Context().Done()
		ended <- r.Context().Err()
	})})
	for _, req := range []string{get, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"} {
		rc := ts.dial(t)
		rc.send(req)
		if _, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"}); err != nil {
			t.Fatal(err)
		}
		rc.c.Close()
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("context error %v, want Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handler's context was not cancelled when the client left")
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(echo), IdleTimeout: 50 * time.Millisecond})
	rc := ts.dial(t)
	rc.send(get)
	rc.read("GET")
	rc.closed() // within the dial's 10 s deadline, so the idle timeout closed it
}

func TestReadTimeout(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(echo), ReadTimeout: 50 * time.Millisecond})
	rc := ts.dial(t)
	rc.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
	if r := rc.read("POST"); r.StatusCode != 400 {
		t.Errorf("body cut off by the read timeout: %d %q, want the handler's 400", r.StatusCode, r.body)
	}
	rc = ts.dial(t)
	rc.send("GET / HTTP/1.1\r\n")
	rc.closed()
}

func TestWriteTimeout(t *testing.T) {
	failed := make(chan error, 1)
	ts := start(t, &httpd.Server{
		WriteTimeout: 50 * time.Millisecond,
		Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for {
				w.Write(chunk)
				if err := w.Flush(); err != nil {
					failed <- err
					return
				}
			}
		}),
	})
	rc := ts.dial(t)
	rc.send(get) // and never read
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Flush to a client that does not read: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that stopped reading held the handler")
	}
}

func TestHalfCloseStillAnswered(t *testing.T) {
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		<-r.Context().Done() // the half-close reads as the client leaving
		io.WriteString(w, "late answer")
	})})
	rc := ts.dial(t)
	rc.send(get)
	if err := rc.c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if r := rc.read("GET"); r.body != "late answer" || !r.Close {
		t.Errorf("after a half-close: %q close=%v, want the answer and a close", r.body, r.Close)
	}
	rc.closed()
}
