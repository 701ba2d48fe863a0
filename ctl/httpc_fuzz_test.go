package ctl

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// FuzzReadAnswer feeds the client's answer parser whatever a socket's
// owner might send: it must return an error or a body, never panic, and
// never read more of a body than the bytes it was given.
func FuzzReadAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"error\":\"x\"}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		resp, err := readHead(br)
		if err != nil {
			return
		}
		if resp.StatusCode < 200 || resp.StatusCode > 999 {
			t.Fatalf("status %d accepted from %q", resp.StatusCode, in)
		}
		r, err := framed(br, resp)
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, r)
		if n > int64(len(in)) {
			t.Fatalf("read a body of %d bytes from %d bytes of input", n, len(in))
		}
	})
}
