package ctl_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl"
)

// rawServer answers every connection on a Unix socket with answer, after
// reading the request's head and Content-Length body, which it records;
// with hold, it then waits for the client to close the connection.
type rawServer struct {
	socket string
	mu     sync.Mutex
	reqs   []string
}

func startRaw(t *testing.T, answer string, hold bool) *rawServer {
	t.Helper()
	s := &rawServer{socket: filepath.Join(t.TempDir(), "raw.sock")}
	ln, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					t.Errorf("server: read request: %v", err)
					return
				}
				b, _ := io.ReadAll(req.Body)
				s.mu.Lock()
				s.reqs = append(s.reqs, req.Method+" "+req.URL.String()+" host="+req.Host+" close="+
					boolString(req.Close)+" type="+req.Header.Get("Content-Type")+" body="+string(b))
				s.mu.Unlock()
				io.WriteString(conn, answer)
				// Holding the connection open until the client closes it
				// shows that the answer's own framing ends the body.
				if hold {
					io.Copy(io.Discard, conn)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (s *rawServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func TestClientRequestFormat(t *testing.T) {
	srv := startRaw(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n"+`{"name":"general","ref":"g@ab"}`, true)
	c := &ctl.Client{Socket: srv.socket}
	r, err := c.Host(context.Background(), ctl.HostRequest{Name: "general"})
	if err != nil {
		t.Fatalf("Host: %v", err)
	}
	if r.Name != "general" || r.Ref != "g@ab" {
		t.Errorf("Host = %+v, want the room in the answer", r)
	}
	want := `POST /v0/rooms/host host=meshd.sock close=false type=application/json body={"name":"general"}`
	if got := srv.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("server saw %q\nwant         [%q]", got, want)
	}
}

// TestClientFraming reads answers framed each way HTTP/1.1 allows.
func TestClientFraming(t *testing.T) {
	for _, tt := range []struct{ name, answer string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n" + `[{"name":"a"}]` + "\n   "},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3;ext=1\r\n[{\"\r\n" + "b\r\nname\":\"a\"}\r\n" + "1\r\n]\r\n" + "0\r\nTrailer: x\r\n\r\n"},
		{"until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + `[{"name":"a"}]`},
		{"after 100 continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n" + `[{"name":"a"}]`},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 14\n\n" + `[{"name":"a"}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startRaw(t, tt.answer, !strings.Contains(tt.answer, "Connection: close"))
			c := &ctl.Client{Socket: srv.socket}
			rooms, err := c.Rooms(context.Background())
			if err != nil || len(rooms) != 1 || rooms[0].Name != "a" {
				t.Errorf("Rooms = %+v, %v; want one room called a", rooms, err)
			}
		})
	}
}

// TestClientBadAnswers: whatever owns the socket, a malformed or
// truncated answer is an error, never a hang or a huge allocation.
func TestClientBadAnswers(t *testing.T) {
	long := strings.Repeat("x", 64<<10)
	for _, tt := range []struct{ name, answer, want string }{
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n[{\"name\":", "unexpected EOF"},
		{"long header", "HTTP/1.1 200 OK\r\nX: " + long + "\r\n\r\n", "line longer than"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"},
		{"huge chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", "malformed chunk size"},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{\"xx\r\n0\r\n\r\n", "malformed chunk end"},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported transfer encoding"},
		{"no head", "", "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startRaw(t, tt.answer, false)
			c := &ctl.Client{Socket: srv.socket}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.Rooms(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Rooms = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestClientEventStreamCancel: a stream's events arrive as the server
// writes its chunks, and cancelling the context ends a Next that waits
// for more.
func TestClientEventStreamCancel(t *testing.T) {
	ev := `{"kind":"message","room":"g@ab","seq":7,"text":"hi"}` + "\n"
	srv := startRaw(t, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"+
		chunk(ev)+chunk(ev[:10])+chunk(ev[10:]), true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &ctl.Client{Socket: srv.socket}
	s, err := c.Events(ctx, "g@ab", 3, true)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	for i := range 2 {
		e, err := s.Next()
		if err != nil || e.Seq != 7 || e.Text != "hi" {
			t.Fatalf("event %d = %+v, %v; want seq 7 saying hi", i, e, err)
		}
	}
	if got := srv.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "GET /v0/events?initial=1&room=g%40ab&since=3 ") {
		t.Errorf("server saw %q, want GET /v0/events with the query", got)
	}
	next := make(chan error, 1)
	go func() {
		_, err := s.Next()
		next <- err
	}()
	cancel()
	if err := <-next; !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %v, want context.Canceled", err)
	}
}

func chunk(s string) string {
	return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n"
}

// connCounter is a net/http server on a Unix socket that counts the
// connections it accepted and those that have closed.
type connCounter struct {
	socket         string
	hs             *http.Server
	mu             sync.Mutex
	opened, closed int
}

func startCounter(t *testing.T) *connCounter {
	t.Helper()
	s := &connCounter{socket: filepath.Join(t.TempDir(), "count.sock")}
	ln, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	s.hs = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"version":"test"}`+"\n")
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch st {
			case http.StateNew:
				s.opened++
			case http.StateClosed, http.StateHijacked:
				s.closed++
			}
		},
	}
	done := make(chan struct{})
	go func() { defer close(done); s.hs.Serve(ln) }()
	t.Cleanup(func() { s.hs.Close(); <-done })
	return s
}

func (s *connCounter) counts() (opened, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, s.closed
}

// TestClientKeepsConnections: requests in a row share one connection,
// whether the answer has a body or not, and concurrent requests use no
// more connections than there are at once; idle ones close within
// about a second.
func TestClientKeepsConnections(t *testing.T) {
	srv := startCounter(t)
	c := &ctl.Client{Socket: srv.socket}
	ctx := context.Background()
	for range 20 {
		if st, err := c.Status(ctx); err != nil || st.Version != "test" {
			t.Fatalf("Status = %+v, %v", st, err)
		}
		if err := c.Leave(ctx, "general"); err != nil {
			t.Fatalf("Leave: %v", err)
		}
	}
	if opened, _ := srv.counts(); opened != 1 {
		t.Errorf("40 requests in a row opened %d connections, want 1", opened)
	}

	const workers = 8
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range 10 {
				if _, err := c.Status(ctx); err != nil {
					t.Errorf("Status: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if opened, _ := srv.counts(); opened > 1+workers {
		t.Errorf("%d workers opened %d connections, want at most %d", workers, opened, 1+workers)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		opened, closed := srv.counts()
		if opened == closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections still open 10 s after the last request", opened-closed, opened)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientKeptConnectionClosed: a request on a kept connection that
// the server has since closed goes out again on a new one.
func TestClientKeptConnectionClosed(t *testing.T) {
	srv := startCounter(t)
	c := &ctl.Client{Socket: srv.socket}
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	// Closes the idle connections, as a server shutting down does.
	srv.hs.SetKeepAlivesEnabled(false)
	deadline := time.Now().Add(10 * time.Second)
	for _, closed := srv.counts(); closed == 0; _, closed = srv.counts() {
		if time.Now().After(deadline) {
			t.Fatal("the server did not close its idle connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Leave(ctx, "general"); err != nil {
		t.Fatalf("Leave after the server closed the kept connection: %v", err)
	}
	if opened, _ := srv.counts(); opened != 2 {
		t.Errorf("opened %d connections, want 2", opened)
	}
}

// TestEventStreamLines: events a line each, whatever their length, those
// the fast decoder leaves to encoding/json among them; Raw is each line
// as sent; the stream's end is io.EOF.
func TestEventStreamLines(t *testing.T) {
	long := strings.Repeat("y", 40<<10)
	lines := []string{
		`{"kind":"message","room":"g@ab","seq":7,"nick":"m1","text":"a \u003cb\u003e"}`,
		`{"kind":"room_appear","room":"g@ab","info":{"name":"g","ref":"g@ab"}}`,
		`{"kind":"message","room":"g@ab","seq":8,"text":"` + long + `"}`,
		`  {"kind":"receipt","room":"g@ab","seq":8,"seen":2,"of":3}`,
	}
	var body string
	for _, l := range lines {
		body += chunk(l + "\n")
	}
	srv := startRaw(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+body+"0\r\n\r\n", false)
	s, err := (&ctl.Client{Socket: srv.socket}).Events(context.Background(), "", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []ctl.Event{
		{Kind: ctl.EventMessage, Room: "g@ab", Seq: 7, Nick: "m1", Text: "a <b>"},
		{Kind: ctl.EventRoomAppear, Room: "g@ab", Info: &ctl.Room{Name: "g", Ref: "g@ab"}},
		{Kind: ctl.EventMessage, Room: "g@ab", Seq: 8, Text: long},
		{Kind: ctl.EventReceipt, Room: "g@ab", Seq: 8, Seen: 2, Of: 3},
	}
	for i, w := range want {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.Kind != w.Kind || ev.Room != w.Room || ev.Seq != w.Seq || ev.Nick != w.Nick || ev.Text != w.Text ||
			ev.Seen != w.Seen || ev.Of != w.Of || (w.Info == nil) != (ev.Info == nil) || (w.Info != nil && (ev.Info.Name != w.Info.Name || ev.Info.Ref != w.Info.Ref)) {
			t.Errorf("event %d = %+v, want %+v", i, ev, w)
		}
		if got := string(s.Raw()); got != strings.TrimSpace(lines[i]) {
			t.Errorf("Raw of event %d = %.80q, want the line as sent", i, got)
		}
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next at the stream's end = %v, want io.EOF", err)
	}
}

// TestEventStreamTooLong: a line over the limit is an error, not an
// allocation as large as the line.
func TestEventStreamTooLong(t *testing.T) {
	huge := `{"kind":"message","text":"` + strings.Repeat("z", 1<<20) + `"}` + "\n"
	srv := startRaw(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(huge)+"0\r\n\r\n", false)
	s, err := (&ctl.Client{Socket: srv.socket}).Events(context.Background(), "", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(); err == nil || !strings.Contains(err.Error(), "event longer than") {
		t.Errorf("Next = %v, want an error about the event's length", err)
	}
}
