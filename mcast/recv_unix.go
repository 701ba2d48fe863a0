//go:build unix && !linux

package mcast

import "net/netip"

// receiver has nothing to keep here: reads go through net.
type receiver struct{}

func newReceiver() *receiver { return nil }

// recvMsg reads one datagram into b and its control messages into oob.
func (c *Conn) recvMsg(b, oob []byte) (n, oobn, flags int, src netip.AddrPort, err error) {
	return c.uc.ReadMsgUDPAddrPort(b, oob)
}
