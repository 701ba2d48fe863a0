//go:build !linux && !darwin && !freebsd

package ctlserver

import (
	"errors"
	"net"
)

// peerCred is not implemented here: every peer is unknown, so the control
// socket is read-only.
func peerCred(*net.UnixConn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are not supported on this system")
}
