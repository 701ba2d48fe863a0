package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/mcast"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// backend is the daemon as the control API sees it.
type backend struct{ d *Daemon }

var _ ctlserver.Backend = backend{}

func (b backend) Status() ctl.Status {
	d := b.d
	d.mu.Lock()
	joined := len(d.members)
	d.mu.Unlock()
	counters := d.stats.Snapshot()
	for name, c := range map[string]*mcast.Conn{"discovery": d.disco, "data": d.data} {
		mc := c.Counters()
		counters[name+"_filtered"] = int64(mc.Filtered)
		counters[name+"_truncated"] = int64(mc.Truncated)
	}
	return ctl.Status{
		Version:     Version,
		PublicKey:   hex.EncodeToString(d.ident.Pub),
		Fingerprint: d.ident.Fingerprint(),
		Nick:        d.running().Nick,
		Boot:        d.boot,
		Uptime:      ctl.Duration(time.Since(d.start).Round(time.Second)),
		Socket:      d.cfg.Socket,
		StateDir:    d.cfg.StateDir,
		Discovery:   d.cfg.Discovery.Group.String(),
		Hosted:      len(d.host.Rooms()),
		Joined:      joined,
		Known:       d.dir.Len(),
		Rooms:       b.mine(),
		Counters:    counters,
	}
}

// accessName is a room's access as the API shows it: empty for open rooms.
func accessName(a rooms.Access) string {
	if a == rooms.AccessOpen {
		return ""
	}
	return a.String()
}

// hostedInfo describes a room this daemon hosts.
func (d *Daemon) hostedInfo(s *rooms.Sequencer) ctl.Room {
	r := ctl.Room{Name: s.Name(), Ref: s.Ref(), HostKey: hex.EncodeToString(d.ident.Pub), Fingerprint: d.ident.Fingerprint(), Group: s.Group().String(), Access: accessName(s.Access())}
	d.decorate(&r)
	return r
}

// roomInfo describes a room the directory knows.
func (d *Daemon) roomInfo(kn rooms.Known) ctl.Room {
	r := ctl.Room{
		Name:        kn.Room,
		Ref:         kn.Ref(),
		HostKey:     hex.EncodeToString(kn.HostKey[:]),
		Fingerprint: rooms.Fingerprint(kn.Key()),
		Group:       kn.Group.String(),
		Serial:      kn.Serial,
		Expires:     kn.Expires,
		Access:      accessName(rooms.Access(kn.Access)),
		KeyChanged:  kn.KeyChanged,
	}
	for _, a := range kn.Addrs {
		r.Addrs = append(r.Addrs, a.String())
	}
	return r
}

func (b backend) Rooms() []ctl.Room {
	d := b.d
	out := []ctl.Room{}
	seen := make(map[string]bool)
	for _, kn := range d.dir.List() {
		r := d.roomInfo(kn)
		d.decorate(&r)
		seen[r.Ref] = true
		out = append(out, r)
	}
	// Hosted and joined rooms are listed even between announcements.
	for _, s := range d.host.Rooms() {
		if !seen[s.Ref()] {
			r := d.hostedInfo(s)
			seen[r.Ref] = true
			out = append(out, r)
		}
	}
	for _, m := range d.memberList() {
		if !seen[m.Ref()] {
			r := ctl.Room{Name: m.Name(), Ref: m.Ref(), HostKey: hex.EncodeToString(m.HostKey()), Fingerprint: rooms.Fingerprint(m.HostKey()), Group: m.Group().String()}
			d.decorate(&r)
			out = append(out, r)
		}
	}
	return out
}

// decorate adds what this daemon's part in a room is.
func (d *Daemon) decorate(r *ctl.Room) {
	name, _ := rooms.SplitRef(r.Ref)
	if s := d.host.Room(name); s != nil && s.Ref() == r.Ref {
		r.Hosted = true
		r.Nick = d.host.Nick()
		r.Members = len(s.Members())
		r.LastSeq = s.LastSeq()
		return
	}
	if m := d.memberByRef(r.Ref); m != nil {
		r.Joined = true
		r.Nick = m.Nick()
		r.Members = len(m.Members())
		r.LastSeq = m.LastSeq()
		r.State = m.State()
		r.Path = m.Path()
	}
}

func (d *Daemon) memberList() []*rooms.Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*rooms.Member, 0, len(d.members))
	for _, m := range d.members {
		out = append(out, m)
	}
	return out
}

func (d *Daemon) memberByRef(ref string) *rooms.Member {
	for _, m := range d.memberList() {
		if m.Ref() == ref {
			return m
		}
	}
	return nil
}

// local finds a room this daemon hosts or has joined, by "name" or
// "name@fp"; exactly one of the results is non-nil on success.
func (d *Daemon) local(ref string) (*rooms.Sequencer, *rooms.Member, error) {
	name, fp := rooms.SplitRef(ref)
	// A fingerprint is a hash of a key: worked out only when the ref has
	// one to match, since every say of a front end comes through here.
	var seqs []*rooms.Sequencer
	if s := d.host.Room(name); s != nil && (fp == "" || strings.HasPrefix(d.ident.Fingerprint(), fp)) {
		seqs = append(seqs, s)
	}
	var ms []*rooms.Member
	for _, m := range d.memberList() {
		if m.Name() == name && (fp == "" || strings.HasPrefix(rooms.Fingerprint(m.HostKey()), fp)) {
			ms = append(ms, m)
		}
	}
	switch {
	case len(seqs)+len(ms) > 1:
		return nil, nil, ctlserver.BadRequest(fmt.Errorf("%q names several rooms you are in; add the host's fingerprint, as in name@fingerprint (see \"meshctl rooms\")", ref))
	case len(seqs) == 1:
		return seqs[0], nil, nil
	case len(ms) == 1:
		return nil, ms[0], nil
	}
	if _, err := d.dir.Resolve(ref); err == nil {
		return nil, nil, ctlserver.NotFound(fmt.Errorf("you are not in room %q: join it first with \"meshctl join %s\"", ref, ref))
	}
	return nil, nil, ctlserver.NotFound(fmt.Errorf("room %q is not known: no host on this network announces it (see \"meshctl rooms\")", ref))
}

func (b backend) Host(ctx context.Context, req ctl.HostRequest) (ctl.Room, error) {
	d := b.d
	acc := rooms.RoomAccess{Allow: req.Allow, Passphrase: []byte(req.Passphrase)}
	if req.Access != "" {
		a, err := rooms.ParseAccess(req.Access)
		if err != nil {
			return ctl.Room{}, ctlserver.BadRequest(err)
		}
		acc.Mode = a
	}
	s, err := d.hostRoom(req.Name, acc)
	switch {
	case errors.Is(err, rooms.ErrAlreadyHosted):
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("you already host %s", s.Ref()))
	case err != nil:
		return ctl.Room{}, ctlserver.BadRequest(err)
	}
	d.announce()
	return d.hostedInfo(s), nil
}

func (b backend) Join(ctx context.Context, req ctl.JoinRequest) (ctl.Room, error) {
	d := b.d
	ref, nick := req.Room, req.Nick
	if nick == "" {
		nick = d.running().Nick
	}
	kn, err := d.dir.Resolve(ref)
	if errors.Is(err, rooms.ErrUnknownRoom) {
		// Not announced within reach of our announcements: search further.
		if _, serr := d.search(ctx, ref, 0); serr != nil {
			if !errors.Is(serr, rooms.ErrNotFound) {
				return ctl.Room{}, serr
			}
			if _, rerr := d.dir.Resolve(ref); rerr != nil {
				return ctl.Room{}, ctlserver.NotFound(fmt.Errorf("%w; a search up to TTL %d found nothing either", rerr, d.cfg.Discovery.SearchTTL))
			}
		}
		kn, err = d.dir.Resolve(ref)
	}
	switch {
	case errors.Is(err, rooms.ErrUnknownRoom):
		return ctl.Room{}, ctlserver.NotFound(err)
	case err != nil:
		return ctl.Room{}, ctlserver.BadRequest(err)
	}
	if kn.Key().Equal(d.ident.Pub) {
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("you host %s; its host is always in it", kn.Ref()))
	}
	if d.memberByRef(kn.Ref()) != nil {
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("you are already in %s", kn.Ref()))
	}
	var cred rooms.Credential
	if req.Invite != "" {
		if cred.Token, err = rooms.ParseToken(req.Invite); err != nil {
			return ctl.Room{}, ctlserver.BadRequest(err)
		}
	}
	if req.Passphrase != "" {
		key := rooms.PassphraseKey(kn.Key(), kn.Room, []byte(req.Passphrase))
		cred.Key = &key
	}
	m, err := rooms.Join(ctx, d.memberConfig(), kn, nick, 0, cred)
	switch {
	case errors.Is(err, rooms.ErrRefused):
		return ctl.Room{}, ctlserver.Conflict(err)
	case errors.Is(err, rooms.ErrHostKeyMismatch):
		return ctl.Room{}, ctlserver.Unavailable(err)
	case err != nil:
		return ctl.Room{}, ctlserver.Unavailable(err)
	}
	if !d.addMember(m) {
		m.Close()
		d.leaveData(m.Group().Addr())
		return ctl.Room{}, ctlserver.Conflict(fmt.Errorf("you are already in %s", kn.Ref()))
	}
	d.saveMemberships()
	_, fp := rooms.SplitRef(ref)
	d.pin(kn, fp != "")
	if now, ok := d.dir.Get(kn.HostKey, kn.Room, time.Now()); ok {
		kn = now // KeyChanged as the pin left it
	}
	r := d.roomInfo(kn)
	d.decorate(&r)
	return r, nil
}

func (b backend) Leave(ctx context.Context, ref string) error {
	d := b.d
	s, m, err := d.local(ref)
	if err != nil {
		return err
	}
	if s != nil {
		return ctlserver.BadRequest(fmt.Errorf("you host %s; a host cannot leave its own room", s.Ref()))
	}
	d.mu.Lock()
	delete(d.members, m.ID())
	d.mu.Unlock()
	m.Close()
	d.leaveData(m.Group().Addr())
	d.hub.forget(m.Ref())
	d.saveMemberships()
	return nil
}

func (b backend) Say(ctx context.Context, ref string, req ctl.SayRequest) (ctl.SayResult, error) {
	d := b.d
	s, m, err := d.local(ref)
	if err != nil {
		return ctl.SayResult{}, err
	}
	if s != nil {
		ref = s.Ref()
	} else {
		ref = m.Ref()
	}
	var receipts <-chan ctl.Event
	if req.Wait > 0 {
		// Subscribed before saying, so that no receipt can come first.
		wctx, cancel := context.WithTimeout(ctx, time.Duration(req.Wait))
		defer cancel()
		_, receipts = d.hub.subscribe(wctx, ref, 0, false, nil)
	}
	var seq, last uint64
	switch {
	case len(req.Lines) > 0 && s != nil:
		seq, last, err = s.SayLines(req.Lines)
	case len(req.Lines) > 0:
		seq, last, err = m.SayLines(ctx, req.Lines)
	case s != nil:
		seq, err = s.Say(req.Text)
	default:
		seq, err = m.Say(ctx, req.Text)
	}
	switch {
	case errors.Is(err, rooms.ErrNotConnected):
		return ctl.SayResult{}, ctlserver.Unavailable(err)
	case err != nil:
		return ctl.SayResult{}, ctlserver.BadRequest(err)
	}
	res := ctl.SayResult{Room: ref, Seq: seq, Last: last}
	if receipts == nil {
		return res, nil
	}
	if last != 0 {
		seq = last // the wait is for every line
	}
	if s != nil {
		res.Seen, res.Of = s.Receipt(seq)
	} else if seen, of, ok := m.Receipt(seq); ok {
		res.Seen, res.Of = seen, of
	}
	for res.Of == 0 || res.Seen < res.Of {
		ev, ok := <-receipts
		if !ok {
			break
		}
		if ev.Kind == ctl.EventReceipt && ev.Seq == seq {
			res.Seen, res.Of = ev.Seen, ev.Of
		}
	}
	return res, nil
}

func (b backend) Who(ref string) (ctl.Who, error) {
	d := b.d
	s, m, err := d.local(ref)
	if err != nil {
		return ctl.Who{}, err
	}
	var (
		room    ctl.Room
		members []wire.MemberInfo
		hostID  [wire.KeyIDLen]byte
	)
	if s != nil {
		w := ctl.Who{Room: d.hostedInfo(s)}
		for _, ms := range s.Members() {
			w.Members = append(w.Members, ctl.Member{
				Nick:        ms.Nick,
				Fingerprint: rooms.KeyIDFingerprint(ms.KeyID),
				Host:        ms.Host,
				Path:        ms.Path,
				Acked:       ms.Acked,
				Muted:       ms.Muted,
			})
		}
		return w, nil
	}
	room = ctl.Room{Name: m.Name(), Ref: m.Ref(), HostKey: hex.EncodeToString(m.HostKey()), Fingerprint: rooms.Fingerprint(m.HostKey()), Group: m.Group().String()}
	members, hostID = m.Members(), rooms.KeyID(m.HostKey())
	d.decorate(&room)
	w := ctl.Who{Room: room, Members: make([]ctl.Member, 0, len(members))}
	self := rooms.KeyID(d.ident.Pub)
	for _, mi := range members {
		cm := ctl.Member{
			Nick:        mi.Nick,
			Fingerprint: rooms.KeyIDFingerprint(mi.KeyID),
			Host:        mi.KeyID == hostID,
		}
		if mi.KeyID == self {
			// A member knows only its own path; the host's who shows all.
			cm.Path = m.Path()
		}
		w.Members = append(w.Members, cm)
	}
	return w, nil
}

func (b backend) Subscribe(ctx context.Context, ref string, since uint64, initial bool, direct ctlserver.Direct) ([]ctl.Event, <-chan ctl.Event, error) {
	d := b.d
	if ref != "" {
		s, m, err := d.local(ref)
		if err != nil {
			return nil, nil, err
		}
		if s != nil {
			ref = s.Ref()
		} else {
			ref = m.Ref()
		}
	}
	snap, live := d.hub.subscribe(ctx, ref, since, initial, direct)
	return snap, live, nil
}

// memberConfig is what every membership of this daemon shares.
func (d *Daemon) memberConfig() rooms.MemberConfig {
	return rooms.MemberConfig{
		Identity:  d.ident,
		Stats:     &d.stats,
		Logger:    d.log.With("component", "member"),
		Deliver:   d.deliver,
		OnState:   d.memberState,
		OnGap:     d.memberGap,
		OnReceipt: d.receipt,
		JoinData:  d.joinData,
		LeaveData: d.leaveData,
		Sender:    d.data,
		Resolve:   d.dir.Resolve,
		Path:      d.running().Member.Path,
	}
}

// mine returns the rooms this daemon hosts or has joined.
func (b backend) mine() []ctl.Room {
	out := []ctl.Room{}
	for _, r := range b.Rooms() {
		if r.Hosted || r.Joined {
			out = append(out, r)
		}
	}
	return out
}

func (b backend) Kick(ctx context.Context, ref string, req ctl.KickRequest) error {
	s, m, err := b.d.local(ref)
	if err != nil {
		return err
	}
	if s == nil {
		return ctlserver.Conflict(fmt.Errorf("only the host of %s can remove its members; you are a member", m.Ref()))
	}
	if err := s.Kick(req.Nick, req.Ban); err != nil {
		if errors.Is(err, rooms.ErrNoSuchMember) {
			return ctlserver.NotFound(err)
		}
		return err
	}
	return nil
}

func (b backend) Invite(ctx context.Context, ref string, req ctl.InviteRequest) (ctl.Invite, error) {
	s, m, err := b.d.local(ref)
	if err != nil {
		return ctl.Invite{}, err
	}
	if s == nil {
		return ctl.Invite{}, ctlserver.Conflict(fmt.Errorf("only the host of %s can invite; ask it for an invite", m.Ref()))
	}
	uses, ttl := req.Uses, time.Duration(req.Expires)
	if uses == 0 {
		uses = rooms.DefaultInviteUses
	}
	if ttl == 0 {
		ttl = rooms.DefaultInviteTTL
	}
	inv, expires, err := s.Invite(uses, ttl)
	switch {
	case errors.Is(err, rooms.ErrAccess):
		return ctl.Invite{}, ctlserver.BadRequest(err)
	case err != nil:
		return ctl.Invite{}, err
	}
	return ctl.Invite{Invite: inv, Room: s.Ref(), Uses: uses, Expires: expires.UTC().Round(time.Second)}, nil
}

func (b backend) Mute(ctx context.Context, ref, nick string, mute bool) error {
	s, m, err := b.d.local(ref)
	if err != nil {
		return err
	}
	if s == nil {
		return ctlserver.Conflict(fmt.Errorf("only the host of %s can mute its members; you are a member", m.Ref()))
	}
	if err := s.Mute(nick, mute); err != nil {
		if errors.Is(err, rooms.ErrNoSuchMember) {
			return ctlserver.NotFound(err)
		}
		return err
	}
	return nil
}
