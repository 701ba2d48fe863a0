package ctlserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"meshd/ctl/ctlserver/httpd"
)

// Peer is the process at the other end of a control connection, as the
// kernel reported it when the connection was made (SO_PEERCRED). UID and
// GID are the process's effective ids.
type Peer struct {
	PID      int32
	UID, GID uint32
}

// Policy decides what a peer may do on the control socket. Root, the user
// meshd runs as, and members of the operator group may do everything;
// anyone else may only read the status and the metrics (ReadOnly).
//
// The socket's mode (SocketMode) already keeps strangers from connecting;
// the policy is defence in depth, and what applies when an operator makes
// the socket world-accessible on purpose.
type Policy struct {
	// OwnUID is the uid meshd runs as.
	OwnUID uint32
	// Group is the operator group's name ("" for none) and GID its id, or
	// -1 if there is no such group.
	Group string
	GID   int64
	// UserGroups returns the gids of the groups the user with this uid
	// belongs to, primary and supplementary, as the group database lists
	// them. Nil means userGroups (os/user).
	UserGroups func(uid uint32) ([]string, error)
}

// newPolicy returns the policy of a daemon running as this process with
// the operator group called group. The gid is looked up once, here.
func newPolicy(group string) Policy {
	p := Policy{OwnUID: uint32(os.Geteuid()), Group: group, GID: -1}
	if group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			if gid, err := strconv.ParseInt(g.Gid, 10, 64); err == nil {
				p.GID = gid
			}
		}
	}
	return p
}

// Operator reports whether peer may do everything: it is root, the user
// meshd runs as, or in the operator group, either as its primary group or
// as a member listed in the group database. Membership changes apply to
// connections made after them.
func (p Policy) Operator(peer Peer) bool {
	if peer.UID == 0 || peer.UID == p.OwnUID {
		return true
	}
	if p.GID < 0 {
		return false
	}
	if int64(peer.GID) == p.GID {
		return true
	}
	lookup := p.UserGroups
	if lookup == nil {
		lookup = userGroups
	}
	gids, err := lookup(peer.UID)
	if err != nil {
		return false
	}
	return slices.Contains(gids, strconv.FormatInt(p.GID, 10))
}

// Allowed reports whether peer may make a request with method on path.
func (p Policy) Allowed(peer Peer, method, path string) bool {
	return ReadOnly(method, path) || p.Operator(peer)
}

// ReadOnly reports whether a request only reads what any local user may
// see: GET /v0/status and GET /v0/metrics.
func ReadOnly(method, path string) bool {
	return method == "GET" && (path == "/v0/status" || path == "/v0/metrics")
}

// denied is the message of the 403 answer to a peer that is not an
// operator.
func (p Policy) denied(peer Peer, method, path string) string {
	if p.Group == "" {
		return fmt.Sprintf("permission denied: %s %s needs root or the user meshd runs as; ask an operator to configure socket_group and add you to it", method, path)
	}
	name := "USER"
	if u, err := user.LookupId(strconv.FormatUint(uint64(peer.UID), 10)); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("permission denied: %s %s needs root or membership of group %q; ask an operator to add you (usermod -aG %s %s)",
		method, path, p.Group, p.Group, name)
}

// userGroups lists the gids of uid's groups from the user and group
// databases.
func userGroups(uid uint32) ([]string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, err
	}
	return u.GroupIds()
}

// access is what the server knows of one connection's peer; ConnContext
// puts it in the context of every request on the connection.
type access struct {
	policy Policy
	peer   Peer
	known  bool // false: the kernel did not say who the peer is

	once     sync.Once
	operator bool
}

type accessKey struct{}

// isOperator decides once per connection: the peer cannot change, and the
// group lookup reads the user and group databases.
func (a *access) isOperator() bool {
	if !a.known {
		return false
	}
	a.once.Do(func() { a.operator = a.policy.Operator(a.peer) })
	return a.operator
}

// connContext returns httpd.Server.ConnContext for pol: it asks the kernel
// who is at the other end of each connection.
func connContext(pol Policy) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		a := &access{policy: pol}
		if lc, ok := c.(*limitConn); ok {
			c = lc.Conn
		}
		if uc, ok := c.(*net.UnixConn); ok {
			if peer, err := peerCred(uc); err == nil {
				a.peer, a.known = peer, true
			}
		}
		return context.WithValue(ctx, accessKey{}, a)
	}
}

// checkAccess answers 403 and returns false if the request's peer may not
// make it. A request that did not come through Serve (ServeHTTP used
// directly, as in a handler test) carries no peer and is not checked: the
// server it is embedded in is then responsible for access.
func checkAccess(w httpd.ResponseWriter, r *httpd.Request) bool {
	a, ok := r.Context().Value(accessKey{}).(*access)
	if !ok || ReadOnly(r.Method, r.URL.Path) || a.isOperator() {
		return true
	}
	if !a.known {
		writeError(w, httpd.StatusForbidden, fmt.Sprintf("permission denied: %s %s: meshd cannot tell who is connecting, so only GET /v0/status and GET /v0/metrics are allowed", r.Method, r.URL.Path))
		return false
	}
	writeError(w, httpd.StatusForbidden, a.policy.denied(a.peer, r.Method, r.URL.Path))
	return false
}

// policyListener is what Listen returns: the socket, with the policy for
// Serve to apply to its connections.
type policyListener struct {
	net.Listener
	policy Policy
}

// maxConns caps the control connections served at once. Each holds a
// goroutine and buffers; meshctl uses one per command and an event stream
// one per follower, so 64 is far above honest use.
const maxConns = 64

// limitListener accepts at most cap(sem) connections at a time. When all
// are in use, Accept waits for one to close; meanwhile new connections
// wait in the kernel's listen backlog (and a client's connect blocks or
// fails once that is full). Idle keep-alive connections are closed after
// idleTimeout, so only requests in progress and event streams hold a slot.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets httpd.Server half-close the connection before closing
// it, as it does for the underlying *net.UnixConn.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn lets httpd.Server write to the socket without waiting
// (httpd.NowWriter), as it can on the underlying *net.UnixConn.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
