package httpd

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func read(s string) (*Request, error) {
	return readRequest(bufio.NewReaderSize(strings.NewReader(s), 4<<10), DefaultLimits)
}

func TestReadRequest(t *testing.T) {
	r, err := read("\r\nPOST /v0/rooms/a%2Fb/say?x=1 HTTP/1.1\r\nhost: meshd.sock\r\ncontent-LENGTH: 5\r\nX-Thing:  \tspaced out \t\r\nX-Thing: two\r\nExpect: 100-Continue\r\n\r\n")
	if err != nil {
		t.Fatalf("readRequest: %v", err)
	}
	if r.Method != "POST" || r.RequestURI != "/v0/rooms/a%2Fb/say?x=1" || r.URL.Path != "/v0/rooms/a/b/say" ||
		r.URL.EscapedPath() != "/v0/rooms/a%2Fb/say" || r.URL.RawQuery != "x=1" || r.ProtoMinor != 1 {
		t.Errorf("request line parsed as %q %q (path %q, query %q) 1.%d", r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.ProtoMinor)
	}
	if r.ContentLength != 5 || !r.expectContinue || r.Close {
		t.Errorf("ContentLength %d, expectContinue %v, Close %v; want 5, true, false", r.ContentLength, r.expectContinue, r.Close)
	}
	if got := r.Header.Values("x-thing"); len(got) != 2 || got[0] != "spaced out" || got[1] != "two" {
		t.Errorf("X-Thing = %q, want [spaced out two]", got)
	}
	if r.Header["Host"][0] != "meshd.sock" || r.Header["Content-Length"][0] != "5" {
		t.Errorf("header keys not canonical: %v", r.Header)
	}

	r, err = read("GET / HTTP/1.0\r\n\r\n")
	if err != nil || !r.Close || r.ProtoMinor != 0 {
		t.Errorf("HTTP/1.0 without Host = %+v, %v; want accepted, Close set", r, err)
	}
	r, err = read("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n")
	if err != nil || !r.Close {
		t.Errorf("Connection: close = %+v, %v; want Close set", r, err)
	}
}

func TestReadRequestRefuses(t *testing.T) {
	const h = "Host: x\r\n"
	tests := []struct {
		name, in string
		code     int
		inMsg    string
	}{
		{"bare LF", "GET / HTTP/1.1\n" + h + "\r\n", 400, "CRLF"},
		{"bare LF in header", "GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "CRLF"},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: b\r\n c\r\n\r\n", 400, "folding"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "malformed header field"},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "junk\r\n\r\n", 400, "malformed header field"},
		{"empty name", "GET / HTTP/1.1\r\n" + h + ": v\r\n\r\n", 400, "malformed header field"},
		{"control char", "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n", 400, "control character"},
		{"DEL", "GET / HTTP/1.1\r\n" + h + "X-A: a\x7fb\r\n\r\n", 400, "control character"},
		{"two spaces", "GET  / HTTP/1.1\r\n" + h + "\r\n", 400, "malformed request line"},
		{"no version", "GET /\r\n" + h + "\r\n", 400, "malformed request line"},
		{"trailing space", "GET / HTTP/1.1 \r\n" + h + "\r\n", 400, "malformed request line"},
		{"bad method", "G(T / HTTP/1.1\r\n" + h + "\r\n", 400, "malformed request line"},
		{"lower version", "GET / http/1.1\r\n" + h + "\r\n", 400, "malformed request line"},
		{"HTTP/2", "GET / HTTP/2.0\r\n" + h + "\r\n", 505, "HTTP/2.0 is not supported"},
		{"absolute form", "GET http://x/ HTTP/1.1\r\n" + h + "\r\n", 400, "must be a path"},
		{"asterisk", "OPTIONS * HTTP/1.1\r\n" + h + "\r\n", 400, "must be a path"},
		{"non-ASCII target", "GET /\xc3\xa9 HTTP/1.1\r\n" + h + "\r\n", 400, "percent-encoded"},
		{"fragment", "GET /a#b HTTP/1.1\r\n" + h + "\r\n", 400, "percent-encoded"},
		{"bad escape", "GET /a%zz HTTP/1.1\r\n" + h + "\r\n", 400, "not a valid path"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "exactly one Host"},
		{"two Hosts", "GET / HTTP/1.1\r\n" + h + h + "\r\n", 400, "exactly one Host"},
		{"chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", 411, "chunked request bodies are not supported"},
		{"chunked and length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 411, "chunked"},
		{"gzip", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", 501, "not supported"},
		{"length not a number", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x10\r\n\r\n", 400, "not a byte count"},
		{"negative length", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", 400, "not a byte count"},
		{"length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 3\r\n\r\n", 400, "not a byte count"},
		{"two lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, "2 Content-Length"},
		{"huge length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n", 400, "not a byte count"},
		{"body too large", "POST / HTTP/1.1\r\n" + h + "Content-Length: 65537\r\n\r\n", 413, "larger than the limit of 65536 bytes"},
		{"expect other", "POST / HTTP/1.1\r\n" + h + "Expect: 200-ok\r\n\r\n", 417, "only 100-continue"},
		{"head too large", "GET / HTTP/1.1\r\n" + h + "X-A: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431, "larger than the limit of 16384 bytes"},
		{"long line", "GET /" + strings.Repeat("a", 20<<10) + " HTTP/1.1\r\n" + h + "\r\n", 431, "larger than the limit"},
		{"too many headers", "GET / HTTP/1.1\r\n" + h + strings.Repeat("X-A: b\r\n", 64) + "\r\n", 431, "more than 64 header fields"},
		{"two empty lines", "\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n", 400, "malformed request line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := read(tt.in)
			var pe *protoError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v, want a %d", err, tt.code)
			}
			if pe.code != tt.code || !strings.Contains(pe.msg, tt.inMsg) {
				t.Errorf("refused with %d %q, want %d containing %q", pe.code, pe.msg, tt.code, tt.inMsg)
			}
		})
	}
}

func TestReadRequestAtLimits(t *testing.T) {
	// Exactly 64 fields and exactly 16 KiB of head are allowed.
	head := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 62)
	pad := DefaultLimits.HeadBytes - len(head) - len("X-B: \r\n\r\n")
	in := head + "X-B: " + strings.Repeat("p", pad) + "\r\n\r\n"
	if len(in) != DefaultLimits.HeadBytes {
		t.Fatalf("test head is %d bytes, want %d", len(in), DefaultLimits.HeadBytes)
	}
	if _, err := read(in); err != nil {
		t.Errorf("head of exactly the limit refused: %v", err)
	}
	if _, err := read("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n"); err != nil {
		t.Errorf("body of exactly the limit refused: %v", err)
	}
}

func TestReadRequestEOF(t *testing.T) {
	if _, err := read(""); err != io.EOF {
		t.Errorf("empty connection: %v, want io.EOF", err)
	}
	for _, in := range []string{"GET", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: x\r\n", "\r\n"} {
		if _, err := read(in); err != io.ErrUnexpectedEOF {
			t.Errorf("%q: %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	for in, want := range map[string]string{
		"content-length": "Content-Length", "X-THING": "X-Thing", "host": "Host",
		"Meshd-Version": "Meshd-Version", "a b": "a b", "x-1-y": "X-1-Y",
	} {
		if got := CanonicalKey(in); got != want {
			t.Errorf("CanonicalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzReadRequest checks that no input makes the parser panic, and that
// what it accepts keeps the promises the server relies on.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET /v0/status HTTP/1.1\r\nHost: meshd.sock\r\n\r\n"))
	f.Add([]byte("POST /v0/rooms/a%2Fb/say HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}"))
	f.Add([]byte("\r\nGET / HTTP/1.0\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{HeadBytes: 512, Headers: 8, BodyBytes: 100}
		r, err := readRequest(bufio.NewReaderSize(strings.NewReader(string(data)), 64), lim)
		if err != nil {
			var pe *protoError
			if errors.As(err, &pe) && (pe.code < 400 || pe.code > 599 || pe.msg == "") {
				t.Fatalf("refusal %d %q", pe.code, pe.msg)
			}
			return
		}
		if !isToken(r.Method) || r.URL == nil || !strings.HasPrefix(r.URL.EscapedPath(), "/") {
			t.Fatalf("accepted a bad request line: %q %q", r.Method, r.RequestURI)
		}
		if r.ContentLength < 0 || r.ContentLength > lim.BodyBytes {
			t.Fatalf("accepted Content-Length %d", r.ContentLength)
		}
		n := 0
		for k, vs := range r.Header {
			if !isToken(k) || CanonicalKey(k) != k {
				t.Fatalf("header key %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header value %q", v)
				}
			}
			n += len(vs)
		}
		if n > lim.Headers {
			t.Fatalf("accepted %d headers", n)
		}
		if _, ok := r.Header["Transfer-Encoding"]; ok {
			t.Fatal("accepted a Transfer-Encoding")
		}
	})
}
