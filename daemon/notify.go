package daemon

import (
	"log/slog"
	"net"
	"os"
)

// notifyReady tells systemd (Type=notify) that meshd is serving. It does
// nothing when meshd was not started by systemd.
func notifyReady(log *slog.Logger) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		// systemd names abstract sockets with a leading '@'.
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("cannot notify systemd", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}
