package httpd_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"meshd/ctl/ctlserver/httpd"
)

// WriteNow sends chunks at once while the socket has room, declines once
// it is full (the handler then writes them the ordinary way, waiting for
// the reader), and the body the client reads is every line in order,
// framed correctly either way.
func TestWriteNow(t *testing.T) {
	const lines = 400
	line := func(i int) string { return fmt.Sprintf("%04d %s\n", i, strings.Repeat("x", 2000)) }
	declined := make(chan struct{})
	// Counted by the handler, read once its response has ended: atomic,
	// since the socket is all that orders the two goroutines.
	var taken, fallback atomic.Int64
	ts := start(t, &httpd.Server{Handler: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		nw, ok := w.(httpd.NowWriter)
		if !ok {
			t.Error("a streaming ResponseWriter is not a NowWriter")
			return
		}
		// Before the head is out the body may still get a Content-Length:
		// nothing goes out at once.
		if ok, _ := nw.WriteNow([]byte("early\n")); ok {
			t.Error("WriteNow before the head was flushed took the chunk")
			return
		}
		if _, err := io.WriteString(w, line(0)); err != nil || w.Flush() != nil {
			return
		}
		for i := 1; i < lines; i++ {
			ok, pending := nw.WriteNow([]byte(line(i)))
			switch {
			case ok && pending:
				taken.Add(1)
				if w.Flush() != nil {
					return
				}
			case ok:
				taken.Add(1)
			default:
				if fallback.Add(1) == 1 {
					close(declined) // the client starts reading
				}
				if _, err := io.WriteString(w, line(i)); err != nil || w.Flush() != nil {
					return
				}
			}
		}
	})})
	rc := ts.dial(t)
	rc.send(get)
	<-declined
	r, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r.Body)
	if got, err := br.ReadString('\n'); err != nil || got != line(0) {
		t.Fatalf("first line %.20q, %v", got, err)
	}
	for i := 1; i < lines; i++ {
		got, err := br.ReadString('\n')
		if err != nil || got != line(i) {
			t.Fatalf("line %d = %.20q, %v; want %.20q", i, got, err, line(i))
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the last line: %q, %v", rest, err)
	}
	// The handler has returned: it finished the body.
	if taken.Load() == 0 || fallback.Load() == 0 {
		t.Errorf("%d chunks sent at once, %d the ordinary way; want both", taken.Load(), fallback.Load())
	}
}
