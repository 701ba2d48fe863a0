package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// The routers of the tests in this file forward unicast and no multicast,
// as on a mesh routed by Babel or OLSR without a multicast plugin.

// listed reports whether h lists room (by name or ref).
func listed(h *host, room string) bool {
	var rs []ctl.Room
	h.ctlJSON(&rs, "rooms")
	for _, r := range rs {
		if r.Name == room || r.Ref == room {
			return true
		}
	}
	return false
}

// chat has each of hs say a line in room and checks that all of them
// see every line.
func chat(t *testing.T, room string, hs ...*host) {
	t.Helper()
	var tails []*tail
	for _, h := range hs {
		tails = append(tails, h.tail(room))
	}
	var last uint64
	for _, h := range hs {
		var res ctl.SayResult
		h.ctlJSON(&res, "say", room, "hello from "+h.name)
		last = res.Seq
	}
	for i, tl := range tails {
		evs := tl.waitSeq(last, 10*time.Second)
		for _, s := range hs {
			found := false
			for _, ev := range evs {
				found = found || ev.Kind == ctl.EventMessage && ev.Text == "hello from "+s.name
			}
			if !found {
				t.Errorf("%s does not show %s's line", hs[i].name, s.name)
			}
		}
	}
}

// TestRelayChat: meshd on each router of a chain, relaying, carries a
// room's announcements across; a member two routers from the host finds
// the room, joins it through IP routing and chats. With a hop limit of one
// relay, the announcements stop at the second router.
func TestRelayChat(t *testing.T) {
	requireE2E(t)
	tp := newChain(t, 2)
	r1, r2 := tp.routers[0], tp.routers[1]
	h, m1, m2 := tp.addHost(0, "h"), tp.addHost(1, "m1"), tp.addHost(2, "m2")
	m1.start("")
	m2.start("")
	r1.start("relay = true")
	r2.start("relay = true\nrelay_hops = 1")
	h.start("[[room]]\nname = \"general\"\n")

	// r1 passes the announcements on as the first relay; r2 may not add
	// a second.
	eventually(t, 10*time.Second, "m1 to list general through r1", func() bool { return listed(m1, "general") })
	eventually(t, 10*time.Second, "r2 to stop general at its hop limit", func() bool {
		return counters(r2.host)["relay_hop_limit"] > 0
	})
	if c := counters(r2.host); c["relayed_sent"] != 0 {
		t.Errorf("r2, at its hop limit, relayed %d announcements", c["relayed_sent"])
	}
	if listed(m2, "general") {
		t.Error("m2 lists general beyond the relays' hop limit")
	}
	if c := counters(r1.host); c["relayed_sent"] == 0 {
		t.Error("r1 counted no relayed announcements")
	}

	// With the default limit, the second router relays too.
	r2.stop()
	r2.start("relay = true")
	eventually(t, 10*time.Second, "m2 to list general through r1 and r2", func() bool { return listed(m2, "general") })
	m2.mustCtl("join", "general")
	chat(t, "general", h, m2)
	eventually(t, 15*time.Second, "m2, behind routers that forward no multicast, to receive the room over tcp", func() bool {
		return joinedPath(m2, "general") == "tcp"
	})
}

// TestPeersChat: with no multicast across the router and no relays, static
// peers carry discovery by unicast. A member that adds the host as a peer
// at run time finds the room by searching; a member the host's config
// names as a peer, once the host reloads its config, lists the room from
// its announcements. Both join and chat with the host.
func TestPeersChat(t *testing.T) {
	requireE2E(t)
	tp := newChain(t, 1)
	h, m, m2 := tp.addHost(0, "h"), tp.addHost(1, "m"), tp.addHost(1, "m2")
	m.start("")
	m2.start("")
	h.start("peers = []\n[[room]]\nname = \"general\"\n")

	peer := netip.AddrPortFrom(h.addr, 7701).String()
	m.mustCtl("peer", "add", peer)
	if out := m.mustCtl("peer", "list"); !strings.Contains(out, peer) {
		t.Errorf("peer list = %q, want %s", out, peer)
	}
	// join searches for a room it does not know: by unicast, to the peer.
	m.mustCtl("join", "general")
	if c := counters(h); c["answers_sent"] == 0 {
		t.Errorf("h answered no query, counters %v", c)
	}
	// h has announced for as long as m took to find it: none of it
	// crossed the router.
	if listed(m2, "general") {
		t.Fatal("m2 lists general with no peer and no multicast route to its host")
	}

	cfgPath := filepath.Join(h.dir, "meshd.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("peers = []"), fmt.Appendf(nil, "peers = [%q]", netip.AddrPortFrom(m2.addr, 7701)), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "m2 to list general from its peer", func() bool { return listed(m2, "general") })
	m2.mustCtl("join", "general")
	chat(t, "general", h, m, m2)

	m.mustCtl("peer", "remove", peer)
	if out := m.mustCtl("peer", "list"); strings.Contains(out, peer) {
		t.Errorf("peer list after remove = %q", out)
	}
}

// TestRelayForgeries: a relay passes on only what verifies and is fresh.
// Injected next to the host: an older announcement replayed after a newer
// one, an announcement with the real host's key and another's signature,
// and a valid announcement of the member's room under another key. The
// relay drops and counts the first two, which the member behind it never
// sees; the member, which pinned the room's key when it joined, lists the
// third apart, flagged.
func TestRelayForgeries(t *testing.T) {
	requireE2E(t)
	tp := newChain(t, 1)
	r := tp.routers[0]
	h, x, m := tp.addHost(0, "h"), tp.addHost(0, "x"), tp.addHost(1, "m")
	m.start("")
	r.start("relay = true")
	h.start("[[room]]\nname = \"general\"\n")
	eventually(t, 10*time.Second, "m to list general through the relay", func() bool { return listed(m, "general") })
	m.mustCtl("join", "general")
	var hst ctl.Status
	h.ctlJSON(&hst, "status")

	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := rooms.NewIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	announce := func(room string, serial uint64) []byte {
		b, err := rooms.SignAnnounce(k, &wire.Announce{
			Serial:   serial,
			Lifetime: 60,
			Group:    netip.MustParseAddrPort("239.255.78.200:7703"),
			Room:     room,
			Addrs:    []netip.AddrPort{netip.AddrPortFrom(x.addr, 7702)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	older, newer := announce("replayed", 5), announce("replayed", 10)
	// The real host's key over a signature of k's: offsets in
	// docs/PROTOCOL.md (the host key follows the header and serial).
	forged := announce("forged", 1)
	q, err := hex.DecodeString(hst.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	copy(forged[wire.HeaderLen+8:], q)
	impostor := announce("general", 1)

	before := counters(r.host)
	var pkts []string
	for _, p := range [][]byte{newer, older, forged, impostor} {
		pkts = append(pkts, hex.EncodeToString(p))
	}
	inj := x.helper(context.Background(), "send", "MESHD_SEND_TO="+hst.Discovery,
		"MESHD_SEND_HEX="+strings.Join(pkts, ","), "MESHD_SEND_ROUNDS=1")
	if out, err := inj.CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	eventually(t, 10*time.Second, "the relay to drop the replay and the forgery", func() bool {
		after := counters(r.host)
		return after["announce_stale"] > before["announce_stale"] && after["announce_bad_sig"] > before["announce_bad_sig"]
	})
	// What the relay accepted, it passed on: the newer announcement and
	// the impostor's.
	eventually(t, 10*time.Second, "m to list the replayed room and the impostor's general", func() bool {
		return listed(m, "replayed") && listed(m, "general@"+k.Fingerprint())
	})
	mc := counters(m)
	if mc["announce_key_changed"] == 0 {
		t.Error("m did not count the pinned room's key change")
	}
	for _, c := range []string{"announce_stale", "announce_bad_sig"} {
		if mc[c] != 0 {
			t.Errorf("m counted %s %d: the relay passed on what it should have dropped", c, mc[c])
		}
	}
	var rs []ctl.Room
	m.ctlJSON(&rs, "rooms")
	var real, fake *ctl.Room
	for i, r := range rs {
		switch {
		case r.Name == "general" && r.HostKey == hst.PublicKey:
			real = &rs[i]
		case r.Name == "general":
			fake = &rs[i]
		case r.Name == "forged":
			t.Errorf("m lists the forged room %s", r.Ref)
		case r.Name == "replayed" && r.Serial != 10:
			t.Errorf("m lists the replayed room at serial %d, want 10", r.Serial)
		}
	}
	if real == nil || !real.Joined || real.KeyChanged {
		t.Errorf("m's general of the real host = %+v, want joined and not flagged", real)
	}
	if fake == nil || fake.Joined || !fake.KeyChanged {
		t.Errorf("m's general of another key = %+v, want listed, not joined, flagged", fake)
	}
	if out := m.mustCtl("rooms"); !strings.Contains(out, "KEY CHANGED") {
		t.Errorf("meshctl rooms shows no KEY CHANGED marker:\n%s", out)
	}
}

// TestRelayLoop: three LANs in a ring, each pair joined by a relaying
// router. Every announcement reaches each relay twice, so the duplicates
// are dropped and the relays' sends stay bounded by the announcements the
// host made, not multiplied around the loop.
func TestRelayLoop(t *testing.T) {
	requireE2E(t)
	tp := newTopology(t, 3, []int{0, 1}, []int{1, 2}, []int{2, 0})
	h, m := tp.addHost(0, "h"), tp.addHost(1, "m")
	m.start("")
	for _, r := range tp.routers {
		r.start("relay = true")
	}
	h.start("[[room]]\nname = \"general\"\n")
	eventually(t, 10*time.Second, "m to list general", func() bool { return listed(m, "general") })

	sum := func(name string) int64 {
		var n int64
		for _, r := range tp.routers {
			n += counters(r.host)[name]
		}
		return n
	}
	start := time.Now()
	sent0 := sum("relayed_sent")
	// Several announcements' worth, seen through the duplicates they
	// make.
	eventually(t, 20*time.Second, "the relays to drop duplicates", func() bool { return sum("relay_duplicates") >= 6 })
	window := time.Since(start)
	sent := sum("relayed_sent") - sent0
	// h announces each second (the suite's announce_interval). Each relay
	// passes one announcement on at most once a third of its lifetime, on
	// its other interface: without duplicate suppression a loop would
	// multiply them without bound.
	bound := int64(len(tp.routers)) * (int64(window/time.Second) + 2)
	t.Logf("over %v the relays sent %d, dropped %d duplicates", window.Round(time.Millisecond), sent, sum("relay_duplicates"))
	if sent > bound {
		t.Errorf("the relays sent %d announcements in %v, want at most %d", sent, window, bound)
	}
	// The loop was closed by duplicate suppression, well within the hop
	// limit.
	if n := sum("relay_hop_limit"); n != 0 {
		t.Errorf("the relays stopped %d announcements at the hop limit: duplicates went round the loop", n)
	}
}

// TestRelayNewLink: a relay listening on every interface picks up a link
// that comes up while it runs, and relays announcements onto it.
func TestRelayNewLink(t *testing.T) {
	requireE2E(t)
	tp := newTopology(t, 2, []int{0})
	r := tp.routers[0]
	h, m := tp.addHost(0, "h"), tp.addHost(1, "m")
	r.interfaces = "[]" // every up multicast interface
	r.start("relay = true")
	m.start("")
	h.start("[[room]]\nname = \"general\"\n")
	eventually(t, 10*time.Second, "r to list general", func() bool { return listed(r.host, "general") })

	r.attach(tp.lans[1])
	// Interfaces are rescanned every 5 s.
	eventually(t, 15*time.Second, "m to list general through r's new link", func() bool { return listed(m, "general") })
}
