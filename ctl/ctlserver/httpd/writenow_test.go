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

// BufferNow and SendNow send chunks at once while the socket has room;
// once it is full the rest waits for a Flush, and what BufferNow declines
// goes the ordinary way, waiting for the reader. The body the client
// reads is every line in order, framed correctly whichever way each went.
func TestNowWriter(t *testing.T) {
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
		if nw.BufferNow([]byte("early\n")) {
			t.Error("BufferNow before the head was flushed took the chunk")
			return
		}
		if _, err := io.WriteString(w, line(0)); err != nil || w.Flush() != nil {
			return
		}
		for i := 1; i < lines; i++ {
			// Two lines of 2 KB fill the 4 KiB buffer: every other one
			// sends what is held first.
			ok := nw.BufferNow([]byte(line(i)))
			if !ok && !nw.SendNow() {
				ok = nw.BufferNow([]byte(line(i)))
			}
			switch {
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
		if nw.SendNow() {
			w.Flush()
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
