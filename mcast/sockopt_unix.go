//go:build unix && !linux

package mcast

import (
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// control prepares the socket before bind.
func control(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// Several daemons on one host share the port; on the BSDs
		// SO_REUSEADDR allows that for multicast.
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// parseControl returns the destination address, arrival interface and
// TTL reported in oob; zero values for what is missing.
func parseControl(oob []byte) Msg {
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob); err != nil {
		return Msg{}
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	return Msg{Dst: dst.Unmap(), IfIndex: cm.IfIndex, TTL: cm.TTL}
}

// ttlControl returns oob unchanged: only Linux takes a TTL per datagram,
// so elsewhere datagrams go out with the socket's TTL.
func ttlControl(oob []byte, _ int) []byte { return oob }
