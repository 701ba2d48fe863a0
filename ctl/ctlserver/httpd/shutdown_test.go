package httpd_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"meshd/ctl/ctlserver/httpd"
)

func TestShutdown(t *testing.T) {
	inHandler := make(chan struct{}, 2)
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		switch r.URL.Path {
		case "/slow":
			// An ordinary request in flight: it sees the cancellation and
			// still gets its answer out.
			inHandler <- struct{}{}
			<-r.Context().Done()
			w.WriteHeader(httpd.StatusServiceUnavailable)
			io.WriteString(w, "shutting down")
		case "/stream":
			w.Flush()
			inHandler <- struct{}{}
			<-r.Context().Done()
		default:
			echo(w, r)
		}
	})})
	idle := ts.dial(t)
	idle.send(get)
	idle.read("GET")
	slow := ts.dial(t)
	slow.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
	stream := ts.dial(t)
	stream.send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
	r, err := http.ReadResponse(stream.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	<-inHandler
	<-inHandler

	if err := ts.stop(); err != nil {
		t.Fatalf("Serve after shutdown: %v, want nil", err)
	}
	if b, err := io.ReadAll(r.Body); err != nil || len(b) != 0 {
		t.Errorf("event stream at shutdown: %q, %v; want a clean end", b, err)
	}
	if got := slow.read("GET"); got.StatusCode != 503 || got.body != "shutting down" || !got.Close {
		t.Errorf("request in flight at shutdown: %d %q close=%v; want its answer and a close", got.StatusCode, got.body, got.Close)
	}
	idle.closed()
	if _, err := net.Dial("unix", ts.path); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
}

func TestShutdownTimeout(t *testing.T) {
	inHandler := make(chan struct{})
	ts := start(t, &httpd.Server{
		ShutdownTimeout: 50 * time.Millisecond,
		Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
			close(inHandler)
			// Ignores its context; only the closed connection stops it.
			for w.Flush() == nil {
				w.Write([]byte("x"))
				time.Sleep(time.Millisecond)
			}
		}),
	})
	rc := ts.dial(t)
	rc.send(get)
	<-inHandler
	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("Serve returned %v after its context ended", time.Since(start))
}

func TestServeReturnsAcceptError(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = (&httpd.Server{Handler: httpd.HandlerFunc(echo)}).Serve(context.Background(), ln)
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener = %v, want net.ErrClosed", err)
	}
}

// flakyListener fails its first Accepts as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptRetriesShortages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&httpd.Server{Handler: httpd.HandlerFunc(echo)}).Serve(ctx, &flakyListener{Listener: ln, fails: 3})
	}()
	rc := (&testServer{path: path}).dial(t)
	rc.send(get)
	if r := rc.read("GET"); r.StatusCode != 200 {
		t.Errorf("after EMFILE: %d, want the request served", r.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
