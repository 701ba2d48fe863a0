//go:build unix

package httpd

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

// What BufferNow held goes out in one SendNow; a write the socket takes
// only part of is finished by the next Flush, before anything written
// after it.
func TestNowWriterPartial(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))

	orig := sysWrite
	defer func() { sysWrite = orig }()
	sysWrite = func(fd int, p []byte) (int, error) { return orig(fd, p[:len(p)/2]) }

	c := &conn{st: &serving{Server: &Server{}}, nc: nc, bw: bufio.NewWriterSize(nc, 4<<10)}
	req := &Request{Method: "GET", ProtoMinor: 1, URL: &url.URL{Path: "/"}}
	resp := newResponse(c, req)
	if err := resp.Flush(); err != nil {
		t.Fatal(err)
	}
	head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	got := make([]byte, len(head))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != head {
		t.Fatalf("head %q, %v; want %q", got, err, head)
	}

	// Held chunks go out in one write; the end the socket did not take
	// waits for the next Flush, before anything written after it.
	if !resp.BufferNow([]byte("0123456789\n")) || !resp.BufferNow([]byte("abc\n")) {
		t.Fatal("BufferNow on an idle stream declined")
	}
	if !resp.SendNow() {
		t.Fatal("SendNow with half written reported nothing pending")
	}
	if resp.BufferNow([]byte("next\n")) {
		t.Fatal("BufferNow took a chunk while the end of the last write was waiting")
	}
	resp.Write([]byte("next\n"))
	if err := resp.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "b\r\n0123456789\n\r\n4\r\nabc\n\r\n5\r\nnext\n\r\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("body %q, %v; want %q", got, err, want)
	}

	// What is held and not yet sent goes before what the handler writes.
	if !resp.BufferNow([]byte("held\n")) {
		t.Fatal("BufferNow on an idle stream declined")
	}
	resp.Write([]byte("after\n"))
	if err := resp.Flush(); err != nil {
		t.Fatal(err)
	}
	want = "5\r\nheld\n\r\n6\r\nafter\n\r\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("body %q, %v; want %q", got, err, want)
	}
}
