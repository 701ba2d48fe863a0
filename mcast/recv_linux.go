package mcast

import (
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiver is the state of recvMsg, kept per Conn with the function
// RawConn.Read calls, so that a read allocates nothing: a closure made
// per read would escape, and with it everything it captured.
type receiver struct {
	mu   sync.Mutex // one read at a time: the fields below are its
	sa   unix.RawSockaddrInet4
	iov  unix.Iovec
	msg  unix.Msghdr
	oob  [oobSize]byte // copied out to the caller's, which can then stay on its stack
	n    int
	errn syscall.Errno
	read func(fd uintptr) bool
}

func newReceiver() *receiver {
	r := &receiver{}
	r.read = r.recvmsg
	return r
}

// recvmsg is the function RawConn.Read calls; false means the socket is
// empty, and RawConn waits for the poller before calling it again.
func (r *receiver) recvmsg(fd uintptr) bool {
	r.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.sa)), Namelen: unix.SizeofSockaddrInet4, Iov: &r.iov}
	r.msg.SetIovlen(1)
	r.msg.Control = &r.oob[0]
	r.msg.SetControllen(len(r.oob))
	for {
		n, _, e := syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.errn = int(n), e
		return true
	}
}

// recvMsg reads one datagram into b and its control messages into oob,
// as (*net.UDPConn).ReadMsgUDPAddrPort does, but calls recvmsg as a raw
// system call: the socket is non-blocking (Go's poller owns it; when it
// is empty RawConn waits for it), so the call never blocks, and a raw
// call does not wake the runtime's monitor thread (sysmon) as every
// ordinary system call after an idle spell does. A router member at 100
// lines a second wakes for each datagram; that monitor's wake-ups were
// about half of its context switches (docs/BENCHMARKS.md, "The data
// path writes its events").
func (c *Conn) recvMsg(b, oob []byte) (n, oobn, flags int, src netip.AddrPort, err error) {
	r := c.recv
	r.mu.Lock()
	defer r.mu.Unlock()
	r.iov = unix.Iovec{}
	if len(b) > 0 {
		r.iov.Base = &b[0]
		r.iov.SetLen(len(b))
	}
	r.sa = unix.RawSockaddrInet4{}
	rerr := c.raw.Read(r.read)
	// Drop the caller's buffer: the receiver outlives the read.
	r.iov = unix.Iovec{}
	if rerr != nil {
		return 0, 0, 0, src, rerr
	}
	if r.errn != 0 {
		return 0, 0, 0, src, os.NewSyscallError("recvmsg", r.errn)
	}
	if r.sa.Family == unix.AF_INET {
		port := (*[2]byte)(unsafe.Pointer(&r.sa.Port)) // network byte order
		src = netip.AddrPortFrom(netip.AddrFrom4(r.sa.Addr), uint16(port[0])<<8|uint16(port[1]))
	}
	oobn = copy(oob, r.oob[:min(int(r.msg.Controllen), len(r.oob))])
	return r.n, oobn, int(r.msg.Flags), src, nil
}
