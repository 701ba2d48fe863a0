// Package ctlserver serves meshd's control API (see docs/API.md) over a
// Unix socket: HTTP/1.1 with JSON bodies under /v0/, and a
// newline-delimited JSON event stream. It knows nothing of rooms or
// transports; the daemon plugs in through Backend. It must import no meshd
// package except meshd/ctl and its own HTTP server, meshd/ctl/ctlserver/httpd,
// so that the API can be tested on its own.
package ctlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver/httpd"
)

// Backend is what the control API drives. The daemon implements it; its
// methods are called concurrently from many requests. Errors should be
// wrapped with NotFound, BadRequest, Conflict or Unavailable; any other
// error is answered with 500.
type Backend interface {
	Status() ctl.Status
	Rooms() []ctl.Room
	Host(ctx context.Context, req ctl.HostRequest) (ctl.Room, error)
	// Join joins a room; req.Room is "name" or "name@fingerprint".
	Join(ctx context.Context, req ctl.JoinRequest) (ctl.Room, error)
	// Invite issues an invite to an invite-only room this daemon hosts.
	Invite(ctx context.Context, room string, req ctl.InviteRequest) (ctl.Invite, error)
	// Mute makes this daemon, a room's host, refuse (or, with mute
	// false, accept again) the lines of the member called nick.
	Mute(ctx context.Context, room, nick string, mute bool) error
	Leave(ctx context.Context, room string) error
	// Kick removes a member from a room this daemon hosts.
	Kick(ctx context.Context, room string, req ctl.KickRequest) error
	// Say sequences req.Text in room; with req.Wait, it waits up to that
	// long for every member to hold the line and reports how many did.
	Say(ctx context.Context, room string, req ctl.SayRequest) (ctl.SayResult, error)
	Who(room string) (ctl.Who, error)
	// Search looks for a room across the mesh; NotFound when unanswered.
	Search(ctx context.Context, req ctl.SearchRequest) (ctl.SearchResult, error)
	Peers() []string
	AddPeer(addr string) error
	RemovePeer(addr string) error
	// Subscribe returns events for one room ref (or all rooms if room ==
	// ""). If initial is true the snapshot holds the current state (the
	// room's recent delivered messages with seq > since, etc.). live is
	// closed when ctx ends or when the subscriber fell too far behind; in
	// the latter case the server ends the stream with an EventOverflow
	// event so the client knows it missed events.
	//
	// direct, when not nil, is offered each live event before live (see
	// Direct).
	Subscribe(ctx context.Context, room string, since uint64, initial bool, direct Direct) (snapshot []ctl.Event, live <-chan ctl.Event, err error)
}

// Direct is how an event stream takes live events on the goroutine that
// publishes them, writing them itself while the stream is idle rather
// than waking the stream's own goroutine for each. A backend calls its
// methods under the lock that orders its sends on live.
type Direct interface {
	// Take is offered each live event first, in the order events are
	// published. If it returns true, the event is the stream's and must
	// not be sent on live; if false, it must be (or the subscription
	// closed as fallen behind). Take never blocks and keeps no reference
	// to the event.
	Take(ev *ctl.Event) bool
	// Send writes what Take took. The backend calls it once a burst of
	// events is published (after an event, or after all the events of
	// one packet), so that a burst goes out in one write. It never
	// blocks.
	Send()
	// Full reports that the events Take declined, which wait on live
	// for the stream's handler, hold more text than a stream may keep
	// waiting: the backend then ends the subscription as fallen behind
	// rather than queue more. A stuck reader of a room whose members say
	// 16 KB lines kept thousands of them, tens of MB on a router.
	Full() bool
}

const (
	// maxSayWait bounds how long a say may wait for receipts.
	maxSayWait = 5 * time.Minute
	// readTimeout bounds how long a connection may dawdle before its
	// request is in, so a stuck client cannot pin a goroutine.
	readTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections nobody uses, so that they
	// do not hold one of the maxConns slots: a front end that makes a new
	// client per request leaves one behind each time.
	idleTimeout = 2 * time.Second
	// writeTimeout cuts off a client that stops reading a response, e.g.
	// an event follower that is stuck: each write gets this long.
	writeTimeout = 10 * time.Second
	// shutdownTimeout bounds how long Serve waits for requests to finish
	// once its context is done before it closes their connections.
	shutdownTimeout = 5 * time.Second
)

// Server is the control API's HTTP handler. It is safe for concurrent use.
type Server struct {
	b       Backend
	version string
	log     *slog.Logger
	mux     httpd.Mux
	mem     memCache
	// refused counts requests the HTTP layer refused before any handler
	// (malformed, over a limit); panics counts handlers that panicked.
	refused, panics atomic.Int64
	// endpoints lists "METHOD /path" for error messages that tell a caller
	// what exists.
	endpoints []string
}

// New returns a Server that answers from b and stamps version on every
// response. A nil logger discards logs.
func New(b Backend, version string, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, version: version, log: logger}
	routes := []struct {
		method, path string
		h            httpd.HandlerFunc
	}{
		{"GET", "/v0/status", s.api(s.status)},
		{"GET", "/v0/rooms", s.api(s.rooms)},
		{"POST", "/v0/rooms/host", s.api(s.host)},
		{"POST", "/v0/rooms/join", s.api(s.join)},
		{"POST", "/v0/rooms/{room}/leave", s.api(s.leave)},
		{"POST", "/v0/rooms/{room}/say", s.api(s.say)},
		{"POST", "/v0/rooms/{room}/kick", s.api(s.kick)},
		{"POST", "/v0/rooms/{room}/invite", s.api(s.invite)},
		{"POST", "/v0/rooms/{room}/mute", s.api(s.mute(true))},
		{"POST", "/v0/rooms/{room}/unmute", s.api(s.mute(false))},
		{"GET", "/v0/rooms/{room}/who", s.api(s.who)},
		{"POST", "/v0/search", s.api(s.search)},
		{"GET", "/v0/peers", s.api(s.peers)},
		{"POST", "/v0/peers", s.api(s.addPeer)},
		{"DELETE", "/v0/peers/{addr}", s.api(s.removePeer)},
		{"GET", "/v0/events", s.events},
		{"GET", "/v0/metrics", s.metrics},
		{"GET", "/v0/debug/pprof/{profile}", s.pprofProfile},
	}
	for _, rt := range routes {
		s.mux.Handle(rt.method, rt.path, rt.h)
		s.endpoints = append(s.endpoints, rt.method+" "+rt.path)
	}
	s.mux.MethodNotAllowed = func(w httpd.ResponseWriter, r *httpd.Request, allow []string) {
		writeError(w, httpd.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: use %s",
			r.Method, r.URL.Path, strings.Join(allow, " or ")))
	}
	s.mux.NotFound = httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
		writeError(w, httpd.StatusNotFound, fmt.Sprintf("no endpoint %s %s: the control API is under /%s/ and has %s",
			r.Method, r.URL.Path, ctl.APIVersion, strings.Join(s.endpoints, ", ")))
	})
	return s
}

// ServeHTTP implements httpd.Handler.
func (s *Server) ServeHTTP(w httpd.ResponseWriter, r *httpd.Request) {
	s.stamp(w)
	// Browsers cannot open Unix sockets, but a page could reach the socket
	// through a local proxy or a forwarded port. Browsers always send
	// Origin (or at least Referer) on such requests and local programs
	// never do, so refusing them keeps web pages from driving meshd.
	_, origin := r.Header["Origin"]
	_, referer := r.Header["Referer"]
	if origin || referer {
		writeError(w, httpd.StatusForbidden,
			"requests from web pages are refused: the control socket is for local programs such as meshctl")
		return
	}
	if !checkAccess(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Serve answers requests on ln until ctx is done, then shuts down: event
// streams end, in-flight requests get shutdownTimeout to finish, and ln is
// closed. It returns nil after a shutdown caused by ctx, and only once
// every goroutine it started has exited.
//
// Serve asks the kernel who is at the other end of each connection and
// applies the access Policy of a listener made by Listen; on any other
// listener the policy has no operator group. At most maxConns connections
// are served at once; more wait until one closes.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	pol := newPolicy("")
	if pl, ok := ln.(*policyListener); ok {
		pol = pl.policy
	}
	hs := &httpd.Server{
		Handler: s,
		Limits: httpd.Limits{
			HeadBytes: httpd.DefaultLimits.HeadBytes,
			Headers:   httpd.DefaultLimits.Headers,
			BodyBytes: MaxBodyBytes,
		},
		ReadTimeout:     readTimeout,
		IdleTimeout:     idleTimeout,
		WriteTimeout:    writeTimeout,
		ShutdownTimeout: shutdownTimeout,
		ConnContext:     connContext(pol),
		Error: func(w httpd.ResponseWriter, r *httpd.Request, code int, msg string) {
			// httpd answers by itself only requests it refused (r is nil)
			// and requests whose handler panicked.
			if r == nil {
				s.refused.Add(1)
			} else if code == httpd.StatusInternalServerError {
				s.panics.Add(1)
			}
			s.stamp(w)
			writeError(w, code, msg)
		},
		Log: s.log,
	}
	if err := hs.Serve(ctx, newLimitListener(ln, maxConns)); err != nil {
		return fmt.Errorf("ctlserver: %w", err)
	}
	return nil
}

// stamp sets the headers every response carries.
func (s *Server) stamp(w httpd.ResponseWriter) {
	h := w.Header()
	h.Set(ctl.VersionHeader, s.version)
	h.Set("X-Content-Type-Options", "nosniff")
}

// apiFunc handles a request whose answer is one JSON value; a nil value
// means 204 No Content.
type apiFunc func(r *httpd.Request) (any, error)

func (s *Server) api(f apiFunc) httpd.HandlerFunc {
	return func(w httpd.ResponseWriter, r *httpd.Request) {
		v, err := f(r)
		if err != nil {
			s.writeBackendError(w, r, err)
			return
		}
		if v == nil {
			w.WriteHeader(httpd.StatusNoContent)
			return
		}
		writeJSON(w, httpd.StatusOK, v)
	}
}

// fullStatus is the backend's status with the control server's own
// counters added.
func (s *Server) fullStatus() ctl.Status {
	st := s.b.Status()
	c := make(map[string]int64, len(st.Counters)+2)
	maps.Copy(c, st.Counters)
	c["ctl_requests_refused"] = s.refused.Load()
	c["ctl_handler_panics"] = s.panics.Load()
	st.Counters = c
	return st
}

func (s *Server) status(*httpd.Request) (any, error) {
	st := s.fullStatus()
	// The server runs in the daemon's process, so its memory is ours.
	mem := s.mem.read()
	st.Memory = &mem
	return st, nil
}

func (s *Server) rooms(*httpd.Request) (any, error) {
	rooms := s.b.Rooms()
	if rooms == nil {
		rooms = []ctl.Room{} // clients should not have to tell null from empty
	}
	return rooms, nil
}

func (s *Server) host(r *httpd.Request) (any, error) {
	var req ctl.HostRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, BadRequest(errors.New(`field "name" is required: the name of the room to host`))
	}
	switch req.Access {
	case "", ctl.AccessOpen, ctl.AccessInvite, ctl.AccessPassphrase:
	default:
		return nil, BadRequest(fmt.Errorf(`field "access" is %q; use "open", "invite" or "passphrase"`, req.Access))
	}
	return s.b.Host(r.Context(), req)
}

func (s *Server) join(r *httpd.Request) (any, error) {
	var req ctl.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Room == "" {
		return nil, BadRequest(errors.New(`field "room" is required: "name" or "name@fingerprint"`))
	}
	return s.b.Join(r.Context(), req)
}

func (s *Server) invite(r *httpd.Request) (any, error) {
	var req ctl.InviteRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Uses < 0 || req.Expires < 0 {
		return nil, BadRequest(errors.New(`fields "uses" and "expires" must not be negative`))
	}
	return s.b.Invite(r.Context(), r.PathValue("room"), req)
}

func (s *Server) mute(mute bool) apiFunc {
	return func(r *httpd.Request) (any, error) {
		var req ctl.MuteRequest
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if req.Nick == "" {
			return nil, BadRequest(errors.New(`field "nick" is required and must not be empty`))
		}
		return nil, s.b.Mute(r.Context(), r.PathValue("room"), req.Nick, mute)
	}
}

func (s *Server) leave(r *httpd.Request) (any, error) {
	return nil, s.b.Leave(r.Context(), r.PathValue("room"))
}

func (s *Server) kick(r *httpd.Request) (any, error) {
	var req ctl.KickRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Nick == "" {
		return nil, BadRequest(errors.New(`field "nick" is required and must not be empty`))
	}
	return nil, s.b.Kick(r.Context(), r.PathValue("room"), req)
}

func (s *Server) say(r *httpd.Request) (any, error) {
	req, err := decodeSay(r)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Text == "" && len(req.Lines) == 0:
		return nil, BadRequest(errors.New(`field "text" (one message) or "lines" (several) is required and must not be empty`))
	case req.Text != "" && len(req.Lines) > 0:
		return nil, BadRequest(errors.New(`give "text" (one message) or "lines" (several), not both`))
	case len(req.Lines) > ctl.MaxSayLines:
		return nil, BadRequest(fmt.Errorf(`field "lines" has %d lines; say at most %d at a time`, len(req.Lines), ctl.MaxSayLines))
	}
	for i, line := range req.Lines {
		if line == "" {
			return nil, BadRequest(fmt.Errorf(`line %d of field "lines" is empty`, i+1))
		}
	}
	if req.Wait < 0 || time.Duration(req.Wait) > maxSayWait {
		return nil, BadRequest(fmt.Errorf(`field "wait" must be between 0s and %v`, maxSayWait))
	}
	return s.b.Say(r.Context(), r.PathValue("room"), req)
}

func (s *Server) who(r *httpd.Request) (any, error) {
	who, err := s.b.Who(r.PathValue("room"))
	if err != nil {
		return nil, err
	}
	if who.Members == nil {
		who.Members = []ctl.Member{}
	}
	return who, nil
}

// maxSearchTTL is the highest IP TTL there is.
const maxSearchTTL = 255

func (s *Server) search(r *httpd.Request) (any, error) {
	var req ctl.SearchRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, BadRequest(errors.New(`field "name" is required: the room to search for`))
	}
	if req.MaxTTL < 0 || req.MaxTTL > maxSearchTTL {
		return nil, BadRequest(fmt.Errorf(`field "max_ttl" must be between 1 and %d (or 0 for the daemon's default)`, maxSearchTTL))
	}
	res, err := s.b.Search(r.Context(), req)
	if err != nil {
		return nil, err
	}
	if res.Rooms == nil {
		res.Rooms = []ctl.Room{}
	}
	return res, nil
}

func (s *Server) peers(*httpd.Request) (any, error) {
	p := s.b.Peers()
	if p == nil {
		p = []string{}
	}
	return ctl.Peers{Peers: p}, nil
}

func (s *Server) addPeer(r *httpd.Request) (any, error) {
	var req ctl.PeerRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Addr == "" {
		return nil, BadRequest(errors.New(`field "addr" is required: the peer's address and discovery port, such as "10.0.0.2:7701"`))
	}
	return nil, s.b.AddPeer(req.Addr)
}

func (s *Server) removePeer(r *httpd.Request) (any, error) {
	return nil, s.b.RemovePeer(r.PathValue("addr"))
}

// writeBackendError answers with the status err carries and logs what a
// person debugging the daemon needs.
func (s *Server) writeBackendError(w httpd.ResponseWriter, r *httpd.Request, err error) {
	code, msg := httpd.StatusInternalServerError, err.Error()
	var e *Error
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left or the daemon is stopping; either way the
		// backend did not fail.
		code, msg = httpd.StatusServiceUnavailable, "request cancelled: meshd is shutting down"
	}
	level := slog.LevelDebug
	if code >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "control request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	writeError(w, code, msg)
}

func writeError(w httpd.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ctl.Error{Error: msg})
}

func writeJSON(w httpd.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// The status is already out; a failed write means the client left.
	if res, ok := v.(ctl.SayResult); ok {
		_, _ = w.Write(appendSayResult(make([]byte, 0, 128), &res))
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Endpoints returns "METHOD /path" for every endpoint, in registration
// order; docs and tests use it to stay in sync with the server.
func (s *Server) Endpoints() []string { return slices.Clone(s.endpoints) }
