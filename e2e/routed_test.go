package e2e

import (
	"fmt"
	"testing"
	"time"

	"meshd/ctl"
)

// The groups a multicast router forwards for meshd: discovery and the
// default range of rooms' data groups.
const (
	discoveryGroup = "239.255.77.1"
	dataGroups     = "239.255.78.0/24"
)

// joinedPath returns how room reaches h ("multicast" or "tcp"), or "" if h
// has not joined it.
func joinedPath(h *host, room string) string {
	var rs []ctl.Room
	h.ctlJSON(&rs, "rooms")
	if r := findRoom(rs, room); r != nil && r.Joined {
		return r.Path
	}
	return ""
}

// TestRoutedJoin: members one and two routers away from a room's host join
// it over TCP through ordinary IP routing. The first router forwards the
// room's multicast, so the member behind it receives the room over
// multicast; the second forwards only announcements, so the member behind
// it receives the room over its TCP session. Everyone sees every line.
func TestRoutedJoin(t *testing.T) {
	requireE2E(t)
	tp := newChain(t, 2)
	tp.routers[0].forwardMulticast(discoveryGroup, dataGroups)
	tp.routers[1].forwardMulticast(discoveryGroup)
	h, m1, m2 := tp.addHost(0, "h"), tp.addHost(1, "m1"), tp.addHost(2, "m2")
	// A TTL that crosses both routers, for announcements and data.
	h.start("ttl = 4\n[[room]]\nname = \"general\"\n")
	m1.start("")
	m2.start("")
	for _, m := range []*host{m1, m2} {
		eventually(t, 10*time.Second, m.name+" to list general", func() bool {
			var rs []ctl.Room
			m.ctlJSON(&rs, "rooms")
			return findRoom(rs, "general") != nil
		})
		m.mustCtl("join", "general")
	}
	tails := []*tail{h.tail("general"), m1.tail("general"), m2.tail("general")}

	// The member whose multicast is not routed hears nothing of the room
	// on its group and goes to its session.
	eventually(t, 15*time.Second, "m2 to receive the room over tcp", func() bool {
		return joinedPath(m2, "general") == "tcp"
	})
	var last uint64
	for i := range 5 {
		for _, s := range []*host{h, m1, m2} {
			var res ctl.SayResult
			s.ctlJSON(&res, "say", "general", fmt.Sprintf("%s line %d", s.name, i))
			last = res.Seq
		}
	}
	for i, tl := range tails {
		evs := tl.waitSeq(last, 10*time.Second)
		said := 0
		for _, ev := range evs {
			if ev.Kind == ctl.EventMessage {
				said++
			}
		}
		if said != 15 {
			t.Errorf("tail %d shows %d lines, want 15", i, said)
		}
	}
	if p := joinedPath(m1, "general"); p != "multicast" {
		t.Errorf("m1, behind a multicast router, receives the room over %q, want multicast", p)
	}
	if c := counters(m1); c["stream_switches"] != 0 || c["data_fetched"] > 2 {
		t.Errorf("m1 switched path %d times and fetched %d packets over its session; want the room over multicast throughout",
			c["stream_switches"], c["data_fetched"])
	}
	if p := joinedPath(m2, "general"); p != "tcp" {
		t.Errorf("m2, behind a router that forwards no room data, receives the room over %q, want tcp", p)
	}
}
