package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/mcast"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// Version is meshd's build version, set by the linker for releases.
var Version = "dev"

// tick paces the host's housekeeping: heartbeats of idle rooms and the
// expiry of lapsed announcements. A daemon that hosts no room has only
// the expiries, rescans and saves, none of which needs a finer step than
// idleTick: each tick is a wake-up of the process, and its runtime's
// monitor thread with it.
const (
	tick     = 250 * time.Millisecond
	idleTick = time.Second
)

// saveInterval paces the saving of how far each membership got. Joins and
// leaves are saved at once and a clean shutdown saves the rest, so only a
// crash loses up to this much: the member resumes that much early and
// shows those lines again, each at its own sequence number. Each save is
// a write, an fsync and a rename: once a second it cost a member 14 µs a
// line at 100 lines a second, and a router's flash a write a second.
const saveInterval = 10 * time.Second

// dataSendBuffer is the data socket's send buffer: about 7 shards (the
// system doubles it, and a shard takes some 2.3 KiB of it), 4 ms of a
// 20 Mbit/s link. A hosted room queues what the link cannot take yet in
// its own outbox, where repairs go ahead of blocks and a NACK for shards
// still there is known to be early; shards in the interface's queue are
// neither. The default buffer, 200 KiB, let that queue hold 90 shards
// ahead of every repair; with 32 KiB, repairs at full rate still cost
// 0.07 to 0.12 link bytes a payload byte at 5 % loss, run to run, against
// 0.07 with this.
const dataSendBuffer = 8 << 10

// dataReadBuffer is the data socket's receive buffer, as Linux allows it
// (net.core.rmem_max; the default, 208 KiB, is 85 ms of a 20 Mbit/s
// room): what arrives while the daemon is kept from reading, by a busier
// process or a slower CPU than the host's, waits here rather than being
// lost. Lost, it has to be repaired for the whole room: on the benchmark's
// machine, members starved for a moment overflowed the default buffer up
// to a few hundred times a run, and the repairs for that loss filled the
// host's link. Memory is taken only while datagrams wait.
const dataReadBuffer = 1 << 20

// Daemon is one running meshd.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	ident *rooms.Identity
	boot  uint32
	stats rooms.Stats
	dir   *rooms.Directory
	disc  *rooms.Discovery     // searches, answers, relays and peers; see discovery.go
	vers  *rooms.VersionWarner // packets of another protocol version, on either socket
	host  *rooms.Host
	hub   *hub
	fps   fingerprints // of senders, for deliver

	disco *mcast.Conn // discovery group: announcements
	data  *mcast.Conn // rooms' data groups
	joins net.Listener

	mu      sync.Mutex
	members map[[wire.RoomIDLen]byte]*rooms.Member
	tagged  []*rooms.Member    // handleData's scratch: the members a packet's room tag names
	groups  map[netip.Addr]int // data groups joined, by how many rooms
	saved   []membership       // as last written to the state directory

	reload reloadState // what Reload changed; see reload.go
}

// New prepares a daemon from cfg: it makes the state directory, the
// identity and the boot counter. Run starts it.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	key, err := loadIdentity(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	boot, err := nextBoot(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ident, err := rooms.NewIdentity(key)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:     cfg,
		log:     log,
		start:   time.Now(),
		ident:   ident,
		boot:    boot,
		hub:     newHub(),
		members: make(map[[wire.RoomIDLen]byte]*rooms.Member),
		groups:  make(map[netip.Addr]int),
	}
	d.dir = rooms.NewDirectory(&d.stats, d.directoryChanged)
	if err := d.loadPins(); err != nil {
		return nil, err
	}
	return d, nil
}

// Run runs the daemon until ctx ends, then shuts it down: the end of the
// context stops the control API, the join server and the timers; then the
// memberships end (each member's host sequences its part), the sockets
// close, which ends the read loops, and Run waits for every goroutine.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.open(); err != nil {
		d.closeSockets()
		return err
	}
	defer d.closeSockets()
	for _, r := range d.cfg.Rooms {
		acc, err := r.RoomAccess()
		if err == nil {
			_, err = d.hostRoom(r.Name, acc)
		}
		if err != nil {
			return fmt.Errorf("%s: room %q: %w", d.cfg.Path, r.Name, err)
		}
	}
	ctlLn, err := ctlserver.Listen(d.cfg.Socket, d.cfg.SocketGroup)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	srv := ctlserver.New(backend{d}, Version, d.log.With("component", "ctl"))
	run("control API", func() error { return srv.Serve(ctx, ctlLn) })
	run("joins", func() error { return d.host.Serve(ctx, d.joins) })
	run("discovery", d.readDiscovery)
	run("data", d.readData)
	// The timers stop before the final save of the memberships: a save
	// of theirs after leaveAll would record that no room was joined.
	timersDone := make(chan struct{})
	wg.Go(func() {
		defer close(timersDone)
		d.timers(ctx)
	})
	saved, err := d.loadMemberships()
	if err != nil {
		d.log.Warn("cannot read memberships; rooms joined before are not rejoined", "err", err)
	}
	for _, ms := range saved {
		wg.Go(func() { d.rejoin(ctx, ms) })
	}

	d.log.Info("meshd running", "version", Version, "key", d.ident.Fingerprint(), "boot", d.boot,
		"socket", d.cfg.Socket, "discovery", d.cfg.Discovery.Group, "joins", d.joins.Addr())
	notifyReady(d.log)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.log.Info("meshd stopping")
	cancel()
	<-timersDone
	d.saveMemberships()
	d.leaveAll()
	d.disc.Close()
	d.closeSockets()
	wg.Wait()
	d.host.Close()
	return runErr
}

// open opens the sockets: discovery and data multicast, and the TCP
// listener for joins.
func (d *Daemon) open() error {
	var err error
	dc := d.cfg.Discovery
	mlog := d.log.With("component", "mcast")
	d.disco, err = mcast.Listen(mcast.Config{Port: int(dc.Group.Port()), Interfaces: dc.Interfaces, Exclude: dc.Exclude, TTL: dc.TTL, Logger: mlog})
	if err != nil {
		return fmt.Errorf("discovery socket: %w", err)
	}
	if err := d.disco.JoinGroup(dc.Group.Addr()); err != nil {
		return fmt.Errorf("join discovery group %v: %w", dc.Group.Addr(), err)
	}
	d.vers = rooms.NewVersionWarner(&d.stats, d.log.With("component", "wire"))
	d.disc, err = rooms.NewDiscovery(rooms.DiscoveryConfig{
		Directory: d.dir,
		Sender:    discoSender{c: d.disco, group: dc.Group},
		Stats:     &d.stats,
		Logger:    d.log.With("component", "discovery"),
		Relay:     dc.Relay,
		RelayHops: dc.RelayHops,
		Peers:     dc.Peers,
		Versions:  d.vers,
	})
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	d.data, err = mcast.Listen(mcast.Config{Port: d.cfg.Host.DataPort, Interfaces: dc.Interfaces, Exclude: dc.Exclude, TTL: dc.TTL,
		SendBuffer: dataSendBuffer, ReadBuffer: dataReadBuffer, Logger: mlog})
	if err != nil {
		return fmt.Errorf("data socket: %w", err)
	}
	d.joins, err = net.Listen("tcp", d.cfg.Host.Listen.String())
	if err != nil {
		return fmt.Errorf("listen for joins: %w", err)
	}
	d.host = rooms.NewHost(rooms.HostConfig{
		Identity:   d.ident,
		Boot:       d.boot,
		Sender:     d.data,
		DataGroups: d.cfg.Host.DataGroups,
		DataPort:   uint16(d.cfg.Host.DataPort),
		Nick:       d.cfg.Nick,
		Lifetime:   time.Duration(dc.Lifetime),
		Addrs:      d.joinAddrs,
		Deliver:    d.deliver,
		Stats:      &d.stats,
		Logger:     d.log.With("component", "host"),
		OpenStore:  d.openHostedStore,
		MemberRate: float64(d.cfg.Host.MemberRate),
		OnReceipt:  d.receipt,
	})
	return nil
}

func (d *Daemon) closeSockets() {
	for _, c := range []interface{ Close() error }{d.disco, d.data, d.joins} {
		if c != nil && !isNilConn(c) {
			c.Close()
		}
	}
}

// isNilConn reports whether c holds a nil pointer, which a typed nil
// stored in an interface would otherwise hide.
func isNilConn(c interface{ Close() error }) bool {
	switch c := c.(type) {
	case *mcast.Conn:
		return c == nil
	case net.Listener:
		return c == nil
	}
	return false
}

// joinAddrs are the addresses announced as S: the configured ones, else
// the address joins are accepted on if it is a specific one, else every
// address of the discovery interfaces; all at the port that accepts joins.
func (d *Daemon) joinAddrs() []netip.AddrPort {
	port := uint16(d.joins.Addr().(*net.TCPAddr).Port)
	addrs := d.cfg.Host.Advertise
	switch {
	case len(addrs) > 0:
	case !d.cfg.Host.Listen.Addr().IsUnspecified():
		addrs = []netip.Addr{d.cfg.Host.Listen.Addr()}
	default:
		addrs = d.disco.LocalAddrs()
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a, port))
	}
	return out
}

// readData carries data packets to the member of their room.
func (d *Daemon) readData() error {
	buf := make([]byte, 2*wire.MaxPacket)
	for {
		n, src, _, err := d.data.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		// A packet may deliver a block of lines: each event stream gets
		// them in one write.
		d.hub.hold()
		d.handleData(buf[:n], src)
		d.hub.release()
	}
}

func (d *Daemon) handleData(b []byte, src netip.AddrPort) {
	if len(b) > wire.MaxPacket {
		d.stats.DataMalformed.Add(1)
		return
	}
	typ, err := wire.PacketType(b)
	if errors.Is(err, wire.ErrVersion) {
		// A daemon of another version: well formed for it, and the user
		// should hear of it rather than find only malformed drops.
		d.vers.Heard(wire.PeerVersion(b), src.Addr(), time.Now())
		return
	}
	if err != nil {
		d.stats.DataMalformed.Add(1)
		return
	}
	var tag wire.RoomTag
	switch typ {
	case wire.TypeShard, wire.TypeHeartbeat:
		h, err := wire.ParseSealedHeader(b)
		if err != nil {
			d.stats.DataMalformed.Add(1)
			return
		}
		tag = h.Room
	case wire.TypeNack:
		h, err := wire.ParseNackHeader(b)
		if err != nil {
			d.stats.NackMalformed.Add(1)
			return
		}
		if s := d.hosted(func(id [wire.RoomIDLen]byte) bool { return id == h.Room }); s != nil {
			s.HandleNack(b)
			return
		}
		tag = wire.TagOf(h.Room)
	default:
		d.stats.DataMalformed.Add(1)
		return
	}
	// Sealed packets name their room by its tag, which two rooms may
	// share (wire.RoomTagLen): each such room tries the packet, and the
	// one whose key does not open it counts it.
	d.mu.Lock()
	ms := d.tagged[:0]
	for id, m := range d.members {
		if wire.TagOf(id) == tag {
			ms = append(ms, m)
		}
	}
	d.tagged = ms
	d.mu.Unlock()
	for _, m := range ms {
		m.HandlePacket(b)
	}
	if len(ms) > 0 {
		clear(ms)
		return
	}
	if d.hosted(func(id [wire.RoomIDLen]byte) bool { return wire.TagOf(id) == tag }) != nil {
		// Our own multicast, looped back.
		return
	}
	d.stats.DataNotJoined.Add(1)
}

// hosted returns a room this daemon hosts whose id is, by is, or nil.
func (d *Daemon) hosted(is func(id [wire.RoomIDLen]byte) bool) *rooms.Sequencer {
	for _, s := range d.host.Rooms() {
		if is(s.ID()) {
			return s
		}
	}
	return nil
}

// timers announces hosted rooms every interval, sends heartbeats and
// expires lapsed rooms, until ctx ends.
func (d *Daemon) timers(ctx context.Context) {
	t := time.NewTimer(tick)
	defer t.Stop()
	var lastAnnounce, lastSave time.Time
	lastRescan := time.Now()
	for {
		now := time.Now()
		if now.Sub(lastRescan) >= rescanInterval {
			d.rescan()
			lastRescan = now
		}
		if now.Sub(lastAnnounce) >= d.announceInterval() {
			d.announce()
			lastAnnounce = now
		}
		if now.Sub(lastSave) >= saveInterval {
			d.saveMemberships()
			lastSave = now
		}
		d.host.Tick(now)
		d.dir.Expire(now)
		// A room hosted meanwhile through the API waits at most idleTick
		// for its first heartbeat, which it sends once a second anyway.
		if len(d.host.Rooms()) > 0 {
			t.Reset(tick)
		} else {
			t.Reset(idleTick)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// announce multicasts every hosted room's announcement, and files it in
// this daemon's own directory, which must not depend on multicast
// loopback to list the rooms it hosts.
func (d *Daemon) announce() {
	for _, pkt := range d.host.Announcements() {
		if err := d.disco.WriteTo(pkt, d.cfg.Discovery.Group); err != nil {
			d.stats.SendErrors.Add(1)
			d.log.Debug("announce", "err", err)
		}
		d.disc.SendToPeers(pkt)
		d.dir.HandleAnnounce(pkt, time.Now())
	}
}

// deliver hands a record, in sequence order, to the control API's
// subscribers. Called by rooms with its locks held: it must not block.
func (d *Daemon) deliver(dl rooms.Delivery) {
	if ev, ok := recordEvent(dl.Room, dl.Seq, &dl.Record, &d.fps); ok {
		d.hub.publish(ev, true)
	}
}

func (d *Daemon) directoryChanged(ev rooms.DirectoryEvent) {
	e := ctl.Event{Kind: ctl.EventRoomAppear, Room: ev.Room.Ref()}
	if ev.Expired {
		e.Kind = ctl.EventRoomExpire
	} else {
		info := d.roomInfo(ev.Room)
		e.Info = &info
	}
	d.hub.publish(e, false)
}

// memberGap tells subscribers of records a member will never deliver. It
// is kept in the backlog with the records, so a late tail shows it too.
func (d *Daemon) memberGap(ref string, from, through uint64) {
	d.hub.publish(ctl.Event{Kind: ctl.EventGap, Room: ref, Seq: from, Through: through}, true)
}

// receipt tells subscribers how many members hold a line said here.
func (d *Daemon) receipt(ref string, seq uint64, seen, of int) {
	d.hub.publish(ctl.Event{Kind: ctl.EventReceipt, Room: ref, Seq: seq, Seen: seen, Of: of}, false)
}

func (d *Daemon) memberState(ref, state string) {
	d.hub.publish(ctl.Event{Kind: ctl.EventRoomState, Room: ref, State: state}, false)
}

// joinData joins a room's data group, counting the rooms that use it.
func (d *Daemon) joinData(g netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.groups[g] == 0 {
		if err := d.data.JoinGroup(g); err != nil {
			return err
		}
	}
	d.groups[g]++
	return nil
}

func (d *Daemon) leaveData(g netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.groups[g]--; d.groups[g] <= 0 {
		delete(d.groups, g)
		d.data.LeaveGroup(g)
	}
}

// leaveAll ends every membership.
func (d *Daemon) leaveAll() {
	d.mu.Lock()
	ms := make([]*rooms.Member, 0, len(d.members))
	for _, m := range d.members {
		ms = append(ms, m)
	}
	clear(d.members)
	d.mu.Unlock()
	for _, m := range ms {
		m.Close()
	}
}

// openHostedStore opens a hosted room's store (openStore), from which
// the hub serves the room's snapshots from now on.
func (d *Daemon) openHostedStore(name string, id [wire.RoomIDLen]byte) (rooms.Store, error) {
	s, err := d.openStore(name, id)
	if err != nil {
		return nil, err
	}
	ref := rooms.Ref(d.ident.Pub, name)
	d.hub.host(ref, &logHistory{log: s, room: ref, fps: &d.fps})
	return s, nil
}

// hostRoom starts hosting a room, and listens on its data group, where
// members multicast their NACKs.
func (d *Daemon) hostRoom(name string, access rooms.RoomAccess) (*rooms.Sequencer, error) {
	s, err := d.host.Open(name, access)
	if s == nil {
		// openHostedStore may have given the hub a store Open then closed.
		d.hub.forget(rooms.Ref(d.ident.Pub, name))
	}
	if err != nil {
		return s, err
	}
	if err := d.joinData(s.Group().Addr()); err != nil {
		d.log.Warn("cannot hear NACKs: members will repair over their sessions", "room", s.Ref(), "err", err)
	}
	return s, nil
}
