//go:build unix

package httpd

import "syscall"

// sysWrite is the system call; a test makes it take part of a chunk.
var sysWrite = syscall.Write

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
	}
	n := 0
	// The socket is non-blocking (Go's poller owns it); returning true
	// tells RawConn not to wait for it to become writable.
	err := c.raw.Write(func(fd uintptr) bool {
		var werr error
		if n, werr = sysWrite(int(fd), p); werr != nil {
			n = 0
		}
		return true
	})
	if err != nil {
		return 0
	}
	return n
}
