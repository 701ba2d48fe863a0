package mcast

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestBuffers: the socket gets the send and receive buffers its Config
// asks for (Linux reports twice the size asked, its bookkeeping share).
func TestBuffers(t *testing.T) {
	const send, read = 24 << 10, 96 << 10
	c, err := Listen(Config{Interfaces: []string{"lo"}, SendBuffer: send, ReadBuffer: read})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var gotSend, gotRead int
	var optErr error
	if err := c.raw.Control(func(fd uintptr) {
		if gotSend, optErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); optErr != nil {
			return
		}
		gotRead, optErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil || optErr != nil {
		t.Fatal(err, optErr)
	}
	if gotSend != 2*send || gotRead != 2*read {
		t.Errorf("SO_SNDBUF %d, SO_RCVBUF %d; want %d and %d", gotSend, gotRead, 2*send, 2*read)
	}
}
