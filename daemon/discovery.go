package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/mcast"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// rescanInterval paces the interface rescans: links that came up are
// joined within this long, and links that went away are dropped.
const rescanInterval = 5 * time.Second

// discoSender is the discovery socket as rooms.Discovery sends on it.
type discoSender struct {
	c     *mcast.Conn
	group netip.AddrPort
}

func (s discoSender) Multicast(b []byte, ttl, ifindex int) error {
	return s.c.WriteToTTL(b, s.group, ttl, ifindex)
}

func (s discoSender) Unicast(b []byte, dst netip.AddrPort) error { return s.c.WriteTo(b, dst) }

func (s discoSender) Interfaces() []int { return s.c.Interfaces() }

// readDiscovery carries packets from the discovery socket to
// rooms.Discovery: announcements, relayed announcements and queries.
func (d *Daemon) readDiscovery() error {
	buf := make([]byte, 2*wire.MaxPacket)
	for {
		m, err := d.disco.ReadMsg(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		// This daemon's own multicast, looped back: its announcements are
		// filed as they are sent, and its queries and relays must not be
		// answered or relayed again.
		if d.disco.IsLocal(m.Src) {
			continue
		}
		d.disc.HandlePacket(buf[:m.N], rooms.Source{
			Addr:      m.Src,
			Multicast: m.Dst.IsMulticast(),
			IfIndex:   m.IfIndex,
			TTL:       m.TTL,
		})
	}
}

// rescan brings both sockets' interfaces up to date.
func (d *Daemon) rescan() {
	for name, c := range map[string]*mcast.Conn{"discovery": d.disco, "data": d.data} {
		added, removed, err := c.Rescan()
		switch {
		case err != nil:
			d.log.Debug("interface rescan", "socket", name, "err", err)
		case len(added) > 0 || len(removed) > 0:
			d.log.Info("interfaces changed", "socket", name, "added", added, "removed", removed)
		}
	}
}

// search looks for a room by "name" or "name@fp"; maxTTL 0 means
// discovery.search_max_ttl. A bare name that is pinned searches only for
// the pinned host key.
func (d *Daemon) search(ctx context.Context, ref string, maxTTL int) (rooms.SearchResult, error) {
	name, fp := rooms.SplitRef(ref)
	if maxTTL == 0 {
		maxTTL = d.cfg.Discovery.SearchTTL
	}
	spec := rooms.SearchSpec{Name: name, Fingerprint: fp, MaxTTL: maxTTL}
	if q, pinned := d.dir.Pinned(name); pinned && fp == "" {
		// Only the room joined before answers: another host's room of
		// that name is not what the bare name means here.
		spec.Key = &q
	}
	res, err := d.disc.Search(ctx, spec)
	if errors.Is(err, rooms.ErrNotFound) {
		return res, ctlserver.NotFound(fmt.Errorf("%w; check the name, or raise --max-ttl or discovery.search_max_ttl where multicast is routed, or add a relay or peers", err))
	}
	if err != nil {
		return res, ctlserver.BadRequest(err)
	}
	return res, nil
}

func (b backend) Search(ctx context.Context, req ctl.SearchRequest) (ctl.SearchResult, error) {
	d := b.d
	name, fp := rooms.SplitRef(req.Name)
	// Our own announcements are not heard back, so a room hosted here is
	// found without asking anyone.
	if s := d.host.Room(name); s != nil && strings.HasPrefix(d.ident.Fingerprint(), fp) {
		return ctl.SearchResult{Rooms: d.roomsNamed(name, fp)}, nil
	}
	res, err := d.search(ctx, req.Name, req.MaxTTL)
	if err != nil {
		return ctl.SearchResult{}, err
	}
	return ctl.SearchResult{Rooms: d.roomsNamed(name, fp), TTL: res.TTL, Elapsed: ctl.Duration(res.Elapsed)}, nil
}

// roomsNamed lists the rooms called name whose fingerprint starts with fp.
func (d *Daemon) roomsNamed(name, fp string) []ctl.Room {
	var out []ctl.Room
	for _, r := range (backend{d}).Rooms() {
		if r.Name == name && strings.HasPrefix(r.Fingerprint, fp) {
			out = append(out, r)
		}
	}
	return out
}

func (b backend) Peers() []string {
	var out []string
	for _, p := range b.d.disc.Peers() {
		out = append(out, p.String())
	}
	return out
}

func (b backend) AddPeer(addr string) error {
	p, err := netip.ParseAddrPort(addr)
	if err == nil {
		err = checkPeer(p)
		if err != nil {
			err = fmt.Errorf("%q %w", addr, err)
		}
	} else {
		err = fmt.Errorf("%q is not an address and port such as \"10.0.0.2:7701\"", addr)
	}
	if err != nil {
		return ctlserver.BadRequest(err)
	}
	peers := b.d.disc.Peers()
	if slices.Contains(peers, p) {
		return nil
	}
	if err := b.d.disc.SetPeers(append(peers, p)); err != nil {
		return ctlserver.Conflict(fmt.Errorf("cannot add %s: %w", addr, err))
	}
	return nil
}

func (b backend) RemovePeer(addr string) error {
	p, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ctlserver.BadRequest(fmt.Errorf("%q is not an address and port such as \"10.0.0.2:7701\"", addr))
	}
	peers := b.d.disc.Peers()
	i := slices.Index(peers, p)
	if i < 0 {
		return ctlserver.NotFound(fmt.Errorf("%s is not a peer (see \"meshctl peer list\")", addr))
	}
	return b.d.disc.SetPeers(slices.Delete(peers, i, i+1))
}
