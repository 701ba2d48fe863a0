package mcast

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// control prepares the socket before bind.
func control(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// Several daemons on one host share the port.
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return
		}
		// Without this, a socket bound to 0.0.0.0 receives every group
		// joined by any socket on the host on the same port.
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// parseDst returns the header destination address from the IP_PKTINFO
// control message in oob, or the zero Addr if there is none. It parses by
// hand because ipv4.ControlMessage.Parse allocates.
func parseDst(oob []byte) netip.Addr {
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return netip.Addr{}
		}
		if hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo {
			// struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
			return netip.AddrFrom4([4]byte(data[8:12]))
		}
		oob = rest
	}
	return netip.Addr{}
}
