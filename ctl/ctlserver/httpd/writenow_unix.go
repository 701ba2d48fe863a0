//go:build unix

package httpd

import "syscall"

// nowWrite is writeNow's state, kept per connection with the function
// RawConn.Write calls, so that a write allocates nothing: a closure made
// per write would escape, and with it what it captured.
type nowWrite struct {
	p     []byte
	n     int
	write func(fd uintptr) bool
}

func (w *nowWrite) call(fd uintptr) bool {
	n, err := sysWrite(int(fd), w.p)
	if err != nil {
		n = 0
	}
	w.n = n
	// The socket is non-blocking (Go's poller owns it): true tells
	// RawConn not to wait for it to become writable.
	return true
}

// writeNow writes p to the connection's socket without waiting for room
// in it and returns how much it took: 0 when the socket is full, its write
// deadline has passed, the connection is closed or broken, or it is not a
// socket; whatever the error, the ordinary write that follows reports it.
func (c *conn) writeNow(p []byte) int {
	if c.raw == nil {
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return 0
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return 0
		}
		c.raw = raw
		c.nw = &nowWrite{}
		c.nw.write = c.nw.call
	}
	c.nw.p, c.nw.n = p, 0
	err := c.raw.Write(c.nw.write)
	n := c.nw.n
	c.nw.p = nil
	if err != nil {
		return 0
	}
	return n
}
