package httpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// memConn is a connection whose client sent in and then closed its side.
type memConn struct {
	in  *strings.Reader
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)         { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.UnixAddr{Net: "unix"} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Net: "unix"} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzServeConn feeds arbitrary bytes to a connection of a server with a
// router, handlers that read, stream and panic, and checks that the server
// neither crashes nor frames a response wrongly.
func FuzzServeConn(f *testing.F) {
	f.Add([]byte("GET /v0/status HTTP/1.1\r\nHost: x\r\n\r\nPOST /v0/rooms/a%2Fb/say HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("GET /v0/events HTTP/1.1\r\nHost: x\r\n\r\nGET /v0/panic HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /v0/rooms/r/say HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET /v0/status HTTP/1.0\r\n\r\nGET /v0/status HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /v0/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Mux
		m.HandleFunc("GET", "/v0/status", func(w ResponseWriter, r *Request) {
			w.Header().Set("X-Query", r.URL.RawQuery)
			io.WriteString(w, `{"ok":true}`)
		})
		m.HandleFunc("POST", "/v0/rooms/{room}/say", func(w ResponseWriter, r *Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(StatusBadRequest)
				return
			}
			w.Header().Set("X-Room", r.PathValue("room"))
			w.Write(b)
		})
		m.HandleFunc("GET", "/v0/events", func(w ResponseWriter, r *Request) {
			for range 3 {
				io.WriteString(w, "{}\n")
				if w.Flush() != nil {
					return
				}
			}
		})
		m.HandleFunc("GET", "/v0/panic", func(w ResponseWriter, r *Request) { panic("fuzz") })
		st := &serving{
			Server: &Server{Handler: &m},
			lim:    Limits{HeadBytes: 1 << 10, Headers: 16, BodyBytes: 1 << 10},
			log:    slog.New(slog.DiscardHandler),
			conns:  make(map[*conn]struct{}),
		}
		mc := &memConn{in: strings.NewReader(string(data))}
		c := st.newConn(mc)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("serving %q hangs:\n%s", data, buf[:runtime.Stack(buf, true)])
		}
		if len(st.conns) != 0 {
			t.Fatal("connection still tracked after it ended")
		}

		out := mc.out.Bytes()
		// Every answer is a complete, well-framed HTTP/1.1 response.
		// HEAD answers have no body, which the parser below cannot tell
		// from their Content-Length, so those inputs are only run.
		if bytes.Contains(data, []byte("HEAD")) {
			return
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("response does not parse: %v\nin:  %q\nout: %q", err, data, out)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) && resp.StatusCode == 200) {
				// Only a stream or echo cut short by the closing client
				// may end early.
				t.Fatalf("response body: %v\nin:  %q\nout: %q", err, data, out)
			}
			if resp.StatusCode != StatusContinue && resp.Close {
				if rest, _ := io.ReadAll(br); len(rest) != 0 {
					t.Fatalf("bytes after a response that closed the connection: %q", rest)
				}
				return
			}
		}
	})
}
