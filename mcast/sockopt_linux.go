package mcast

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"unsafe"

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

// parseControl returns the header destination address and the arrival
// interface from the IP_PKTINFO control message in oob, and the TTL from
// IP_TTL; zero values for what is missing. It parses by hand because
// ipv4.ControlMessage.Parse allocates.
func parseControl(oob []byte) Msg {
	var m Msg
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return m
		}
		switch {
		case hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
			m.IfIndex = int(int32(binary.NativeEndian.Uint32(data[0:4])))
			m.Dst = netip.AddrFrom4([4]byte(data[8:12]))
		case hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_TTL && len(data) >= 4:
			m.TTL = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		}
		oob = rest
	}
	return m
}

// ttlControl appends to oob an IP_TTL control message, which makes Linux
// send the datagram, multicast included, with that TTL; ttl 0 appends
// nothing.
func ttlControl(oob []byte, ttl int) []byte {
	if ttl == 0 {
		return oob
	}
	start := len(oob)
	oob = append(oob, make([]byte, unix.CmsgSpace(4))...)
	msg := oob[start:]
	var hdr unix.Cmsghdr
	hdr.Level = unix.IPPROTO_IP
	hdr.Type = unix.IP_TTL
	hdr.SetLen(unix.CmsgLen(4))
	copy(msg, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.SizeofCmsghdr))
	binary.NativeEndian.PutUint32(msg[unix.CmsgLen(0):], uint32(ttl))
	return oob
}
