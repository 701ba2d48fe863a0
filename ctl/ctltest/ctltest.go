// Package ctltest is a harness for testing control API code without a
// daemon: an in-memory ctlserver.Backend with rooms, members and an event
// feed, and Start, which serves it on a Unix socket in a temporary
// directory (the way tailscale's lapitest serves LocalAPI).
package ctltest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
)

const (
	// Version is what the harness's server puts in ctl.VersionHeader.
	Version = "test-1"
	// Fingerprint is the fake daemon's own fingerprint: rooms it hosts are
	// NAME@Fingerprint.
	Fingerprint = "abcd1234"
	// Nick is the fake daemon's default nick.
	Nick = "tester"
	// SubBuffer is how many live events a subscriber may lag behind before
	// its subscription is closed as overflowed.
	SubBuffer = 16
)

// Backend is an in-memory ctlserver.Backend. Its rooms follow simple rules
// close to the daemon's: Host creates a joined room, Join needs a known
// room, Say needs a joined one, and every join, part and message is
// sequenced, kept as history and published to subscribers. It is safe for
// concurrent use.
type Backend struct {
	// Queue is how many live events a subscriber may lag behind, as the
	// daemon's 4096; 0 for SubBuffer. Set it before the first subscriber.
	Queue int

	mu      sync.Mutex
	status  ctl.Status
	rooms   []*ctl.Room // in creation order
	members map[string][]ctl.Member
	history map[string][]ctl.Event
	subs    map[*subscriber]struct{}
	errs    map[string]error
	joins   []ctl.JoinRequest
	muted   map[string]bool // "ref nick"
	peers   []string
	// direct counts live events the server's event streams took on the
	// publishing goroutine rather than from their channel.
	direct int
}

type subscriber struct {
	room   string // ref, or "" for all rooms
	ch     chan ctl.Event
	direct ctlserver.Direct // the server's stream, offered each event first
}

var _ ctlserver.Backend = (*Backend)(nil)

// NewBackend returns a Backend with no rooms.
func NewBackend() *Backend {
	return &Backend{
		status: ctl.Status{
			Version:     Version,
			PublicKey:   strings.Repeat("ab", 32),
			Fingerprint: Fingerprint,
			Nick:        Nick,
			Boot:        3,
			Uptime:      ctl.Duration(90 * time.Second),
			Discovery:   "239.77.0.1:7700",
			Counters:    map[string]int64{"packets_in": 10, "packets_out": 7},
		},
		members: make(map[string][]ctl.Member),
		history: make(map[string][]ctl.Event),
		subs:    make(map[*subscriber]struct{}),
		muted:   make(map[string]bool),
	}
}

// Joins returns the join requests made so far.
func (b *Backend) Joins() []ctl.JoinRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ctl.JoinRequest(nil), b.joins...)
}

// Muted reports whether nick is muted in the room ref.
func (b *Backend) Muted(ref, nick string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.muted[ref+" "+nick]
}

// SetError makes every later call of the named method ("Host", "Join",
// "Leave", "Say", "Who" or "Subscribe") fail with err; nil restores it.
func (b *Backend) SetError(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.errs == nil {
		b.errs = make(map[string]error)
	}
	b.errs[method] = err
}

// AddRoom adds a room announced by another daemon. An empty Ref is filled
// in from Name and Fingerprint.
func (b *Backend) AddRoom(r ctl.Room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.Ref == "" {
		r.Ref = r.Name + "@" + r.Fingerprint
	}
	b.rooms = append(b.rooms, &r)
}

// Publish delivers ev to the subscribers of its room and of all rooms; a
// subscriber whose buffer is full is dropped, as the daemon does. An
// event with a Seq is also kept as history for later snapshots.
func (b *Backend) Publish(ev ctl.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishLocked(ev)
}

// Overflow ends every live subscription as if its reader fell behind.
func (b *Backend) Overflow() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		b.dropLocked(s)
	}
}

// Direct returns how many live events the server's event streams wrote
// on the publishing goroutine, rather than taking them from the channel.
func (b *Backend) Direct() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.direct
}

// Subscribers returns the number of live subscriptions.
func (b *Backend) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

func (b *Backend) publishLocked(ev ctl.Event) {
	if ev.Seq > 0 && ev.Room != "" {
		b.history[ev.Room] = append(b.history[ev.Room], ev)
		if r := b.findLocked(ev.Room); r != nil && ev.Seq > r.LastSeq {
			r.LastSeq = ev.Seq
		}
	}
	for s := range b.subs {
		if s.room != "" && s.room != ev.Room {
			continue
		}
		if s.direct != nil && s.direct.Take(&ev) {
			b.direct++
			s.direct.Send()
			continue
		}
		if s.direct != nil && s.direct.Full() {
			b.dropLocked(s)
			continue
		}
		select {
		case s.ch <- ev:
		default:
			b.dropLocked(s)
		}
	}
}

func (b *Backend) dropLocked(s *subscriber) {
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

func (b *Backend) failLocked(method string) error { return b.errs[method] }

func (b *Backend) findLocked(ref string) *ctl.Room {
	for _, r := range b.rooms {
		if r.Ref == ref {
			return r
		}
	}
	return nil
}

// lookupLocked resolves "name@fingerprint" or a bare name that only one
// room has.
func (b *Backend) lookupLocked(ref string) (*ctl.Room, error) {
	if r := b.findLocked(ref); r != nil {
		return r, nil
	}
	var found []*ctl.Room
	for _, r := range b.rooms {
		if r.Name == ref {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, ctlserver.NotFound(fmt.Errorf(`room %q is not known: run "meshctl rooms" to see the rooms on this network`, ref))
	case 1:
		return found[0], nil
	}
	refs := make([]string, len(found))
	for i, r := range found {
		refs[i] = r.Ref
	}
	return nil, ctlserver.BadRequest(fmt.Errorf("room name %q is ambiguous: use one of %s", ref, strings.Join(refs, ", ")))
}

// Status implements ctlserver.Backend.
func (b *Backend) Status() ctl.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.status
	st.Hosted, st.Joined, st.Known = 0, 0, len(b.rooms)
	for _, r := range b.rooms {
		if r.Hosted {
			st.Hosted++
		}
		if r.Joined {
			st.Joined++
		}
	}
	return st
}

// Rooms implements ctlserver.Backend.
func (b *Backend) Rooms() []ctl.Room {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ctl.Room
	for _, r := range b.rooms {
		out = append(out, *r)
	}
	return out
}

// Host implements ctlserver.Backend.
func (b *Backend) Host(_ context.Context, req ctl.HostRequest) (ctl.Room, error) {
	name := req.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Host"); err != nil {
		return ctl.Room{}, err
	}
	ref := name + "@" + Fingerprint
	if b.findLocked(ref) != nil {
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("room %s is already hosted here", ref))
	}
	r := &ctl.Room{
		Name:        name,
		Ref:         ref,
		HostKey:     b.status.PublicKey,
		Fingerprint: Fingerprint,
		Addrs:       []string{"192.0.2.1:7701"},
		Group:       "239.77.0.2:7702",
		Serial:      1,
		Hosted:      true,
		Joined:      true,
		Nick:        b.status.Nick,
		Members:     1,
		State:       "connected",
	}
	if req.Access != ctl.AccessOpen {
		r.Access = req.Access
	}
	b.rooms = append(b.rooms, r)
	b.members[ref] = []ctl.Member{{Nick: r.Nick, Fingerprint: Fingerprint, Host: true, Path: "multicast"}}
	return *r, nil
}

// Join implements ctlserver.Backend.
func (b *Backend) Join(_ context.Context, req ctl.JoinRequest) (ctl.Room, error) {
	room, nick := req.Room, req.Nick
	b.mu.Lock()
	defer b.mu.Unlock()
	b.joins = append(b.joins, req)
	if err := b.failLocked("Join"); err != nil {
		return ctl.Room{}, err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return ctl.Room{}, err
	}
	if r.Joined {
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("already joined %s as %s", r.Ref, r.Nick))
	}
	if nick == "" {
		nick = b.status.Nick
	}
	r.Joined, r.Nick, r.State = true, nick, "connected"
	r.Members++
	b.members[r.Ref] = append(b.members[r.Ref], ctl.Member{Nick: nick, Fingerprint: Fingerprint, Path: "multicast"})
	b.publishLocked(ctl.Event{Kind: ctl.EventJoin, Room: r.Ref, Seq: r.LastSeq + 1, Nick: nick, Fingerprint: Fingerprint})
	return *r, nil
}

// Invite implements ctlserver.Backend: an invite-only room this backend
// hosts gets the invite ROOM/TOKEN.
func (b *Backend) Invite(_ context.Context, room string, req ctl.InviteRequest) (ctl.Invite, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Invite"); err != nil {
		return ctl.Invite{}, err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return ctl.Invite{}, err
	}
	if !r.Hosted || r.Access != ctl.AccessInvite {
		return ctl.Invite{}, ctlserver.Conflict(fmt.Errorf("%s is not an invite-only room hosted here", r.Ref))
	}
	uses, ttl := max(req.Uses, 1), time.Duration(req.Expires)
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	return ctl.Invite{Invite: r.Ref + "/TOKEN", Room: r.Ref, Uses: uses, Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(ttl)}, nil
}

// Mute implements ctlserver.Backend.
func (b *Backend) Mute(_ context.Context, room, nick string, mute bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Mute"); err != nil {
		return err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return err
	}
	if !r.Hosted {
		return ctlserver.Conflict(fmt.Errorf("only the host of %s can mute", r.Ref))
	}
	for _, m := range b.members[r.Ref] {
		if m.Nick == nick {
			if mute {
				b.muted[r.Ref+" "+nick] = true
			} else {
				delete(b.muted, r.Ref+" "+nick)
			}
			return nil
		}
	}
	return ctlserver.NotFound(fmt.Errorf("no member called %q in %s", nick, r.Ref))
}

// Search implements ctlserver.Backend: it finds the rooms added with
// AddRoom by name, at TTL 1.
func (b *Backend) Search(_ context.Context, req ctl.SearchRequest) (ctl.SearchResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Search"); err != nil {
		return ctl.SearchResult{}, err
	}
	var res ctl.SearchResult
	for _, r := range b.rooms {
		if r.Name == req.Name || r.Ref == req.Name {
			res.Rooms = append(res.Rooms, *r)
		}
	}
	if len(res.Rooms) == 0 {
		return res, ctlserver.NotFound(fmt.Errorf("room %q: no answer to a search up to TTL %d", req.Name, max(req.MaxTTL, 32)))
	}
	res.TTL, res.Elapsed = 1, ctl.Duration(40*time.Millisecond)
	return res, nil
}

// Peers implements ctlserver.Backend.
func (b *Backend) Peers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.peers)
}

// AddPeer implements ctlserver.Backend.
func (b *Backend) AddPeer(addr string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return ctlserver.BadRequest(fmt.Errorf("%q is not an address and port", addr))
	}
	if !slices.Contains(b.peers, addr) {
		b.peers = append(b.peers, addr)
	}
	return nil
}

// RemovePeer implements ctlserver.Backend.
func (b *Backend) RemovePeer(addr string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.peers, addr)
	if i < 0 {
		return ctlserver.NotFound(fmt.Errorf("%s is not a peer", addr))
	}
	b.peers = slices.Delete(b.peers, i, i+1)
	return nil
}

// Kick implements ctlserver.Backend.
func (b *Backend) Kick(_ context.Context, room string, req ctl.KickRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Kick"); err != nil {
		return err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return err
	}
	if !r.Hosted {
		return ctlserver.Conflict(fmt.Errorf("only the host of %s can kick", r.Ref))
	}
	for i, m := range b.members[r.Ref] {
		if m.Nick == req.Nick {
			b.members[r.Ref] = append(b.members[r.Ref][:i:i], b.members[r.Ref][i+1:]...)
			r.Members--
			return nil
		}
	}
	return ctlserver.NotFound(fmt.Errorf("no member called %q in %s", req.Nick, r.Ref))
}

// Leave implements ctlserver.Backend.
func (b *Backend) Leave(_ context.Context, room string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Leave"); err != nil {
		return err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return err
	}
	if !r.Joined {
		return ctlserver.Conflict(fmt.Errorf("not a member of %s", r.Ref))
	}
	b.publishLocked(ctl.Event{Kind: ctl.EventPart, Room: r.Ref, Seq: r.LastSeq + 1, Nick: r.Nick, Fingerprint: Fingerprint})
	r.Joined, r.Hosted, r.State = false, false, ""
	r.Members--
	ms := b.members[r.Ref]
	for i, m := range ms {
		if m.Fingerprint == Fingerprint {
			b.members[r.Ref] = append(ms[:i:i], ms[i+1:]...)
			break
		}
	}
	return nil
}

// Say implements ctlserver.Backend.
func (b *Backend) Say(_ context.Context, room string, req ctl.SayRequest) (ctl.SayResult, error) {
	texts := req.Lines
	if len(texts) == 0 {
		texts = []string{req.Text}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Say"); err != nil {
		return ctl.SayResult{}, err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return ctl.SayResult{}, err
	}
	if !r.Joined {
		return ctl.SayResult{}, ctlserver.Conflict(fmt.Errorf(`not a member of %s: join it first with "meshctl join %s"`, r.Ref, r.Ref))
	}
	res := ctl.SayResult{Room: r.Ref}
	for _, text := range texts {
		ev := ctl.Event{Kind: ctl.EventMessage, Room: r.Ref, Seq: r.LastSeq + 1, Nick: r.Nick, Fingerprint: Fingerprint, Text: text}
		b.publishLocked(ev)
		res.Seq = cmp.Or(res.Seq, ev.Seq)
		if len(req.Lines) > 0 {
			res.Last = ev.Seq
		}
	}
	return res, nil
}

// Who implements ctlserver.Backend.
func (b *Backend) Who(room string) (ctl.Who, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Who"); err != nil {
		return ctl.Who{}, err
	}
	r, err := b.lookupLocked(room)
	if err != nil {
		return ctl.Who{}, err
	}
	return ctl.Who{Room: *r, Members: append([]ctl.Member(nil), b.members[r.Ref]...)}, nil
}

// Subscribe implements ctlserver.Backend. The snapshot is the kept
// history after since.
func (b *Backend) Subscribe(ctx context.Context, room string, since uint64, initial bool, direct ctlserver.Direct) ([]ctl.Event, <-chan ctl.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failLocked("Subscribe"); err != nil {
		return nil, nil, err
	}
	if room != "" {
		r, err := b.lookupLocked(room)
		if err != nil {
			return nil, nil, err
		}
		room = r.Ref
	}
	var snap []ctl.Event
	if initial {
		for _, r := range b.rooms {
			if room != "" && r.Ref != room {
				continue
			}
			for _, ev := range b.history[r.Ref] {
				if ev.Seq > since {
					snap = append(snap, ev)
				}
			}
		}
	}
	s := &subscriber{room: room, ch: make(chan ctl.Event, cmp.Or(b.Queue, SubBuffer)), direct: direct}
	b.subs[s] = struct{}{}
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.dropLocked(s)
	})
	return snap, s.ch, nil
}

// Server is a control API server started by Start.
type Server struct {
	// Client talks to the server.
	Client *ctl.Client
	// Socket is the server's socket path.
	Socket string

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Start serves b on a Unix socket in a new temporary directory until Stop
// or the end of the test. The server logs to the test's output.
func Start(t testing.TB, b ctlserver.Backend) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meshd.sock")
	ln, err := ctlserver.Listen(path, "")
	if err != nil {
		t.Fatalf("ctltest: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Client: &ctl.Client{Socket: path}, Socket: path, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- ctlserver.New(b, Version, logger).Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("ctltest: Serve: %v", err)
		}
	})
	return s
}

// Stop shuts the server down and returns what Serve returned. It may be
// called more than once.
func (s *Server) Stop() error {
	s.once.Do(func() {
		s.cancel()
		s.err = <-s.done
	})
	return s.err
}
