package e2e

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
)

// plug gives h a new interface ifname on l, with address 10.77.<l>.200,
// as a cable plugged in (or a mesh link coming up) would.
func plug(t *testing.T, h *host, l *lan, ifname string) {
	t.Helper()
	peer := "p-" + h.name
	addr := netip.AddrFrom4([4]byte{10, 77, byte(l.subnet), 200})
	for _, s := range [][]string{
		{"-n", h.ns, "link", "add", ifname, "type", "veth", "peer", "name", peer, "netns", l.bridge},
		{"-n", l.bridge, "link", "set", peer, "master", "br0", "up"},
		{"-n", h.ns, "addr", "add", addr.String() + "/24", "dev", ifname},
		{"-n", h.ns, "link", "set", ifname, "up"},
	} {
		if err := ip(s...); err != nil {
			t.Fatal(err)
		}
	}
}

// A daemon on every interface (interfaces = []) takes up a link that comes
// up while it runs, within a rescan (5 s), and drops it when it goes;
// exclude_interfaces keeps it off a link.
func TestInterfacesComeAndGo(t *testing.T) {
	requireE2E(t)
	home, other, third := newLAN(t), newLAN(t), newLAN(t)
	alice := home.addHost("alice")
	bob := other.addHost("bob")
	carol := third.addHost("carol")
	alice.interfaces = "[]"
	alice.start(`exclude_interfaces = ["eth9"]`)
	bob.start("")
	carol.start("")
	alice.mustCtl("host", "roaming")

	listed := func(h *host) bool {
		var rooms []ctl.Room
		h.ctlJSON(&rooms, "rooms")
		return findRoom(rooms, "roaming") != nil
	}
	plug(t, alice, other, "eth1")
	plug(t, alice, third, "eth9")
	start := time.Now()
	// A rescan (every 5 s) and an announcement (every 1 s) later.
	eventually(t, 10*time.Second, "bob to list the room over alice's new link", func() bool { return listed(bob) })
	t.Logf("room listed over a new link after %v", time.Since(start).Round(100*time.Millisecond))

	if err := ip("-n", alice.ns, "link", "del", "eth1"); err != nil {
		t.Fatal(err)
	}
	// room_lifetime is 5 s in the test configuration.
	eventually(t, 15*time.Second, "the room to lapse at bob once the link is gone", func() bool { return !listed(bob) })
	// Plugged in again (the same name, a new interface index): taken up again.
	plug(t, alice, other, "eth1")
	eventually(t, 10*time.Second, "bob to list the room again", func() bool { return listed(bob) })
	b, err := os.ReadFile(alice.log)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.Contains(log, `removed=[eth1]`) || !strings.Contains(log, `added=[eth1]`) {
		t.Errorf("alice's log does not report eth1 coming and going:\n%s", log)
	}
	// The excluded link, plugged in more than two rescans ago: never
	// taken up, so nothing of alice's reached carol.
	if strings.Contains(log, "eth9") || listed(carol) {
		t.Errorf("alice took up the excluded eth9 (carol lists the room: %v):\n%s", listed(carol), log)
	}
}
