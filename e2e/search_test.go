package e2e

import (
	"strings"
	"testing"
	"time"

	"meshd/ctl"
)

// announcementsTTL1 matches the discovery packets that carry an
// announcement (type byte 1, the fourth payload byte) with IP TTL 1: the
// host's own announcements on the link, and answers to TTL-1 queries.
const announcementsTTL1 = "ip ttl 1 udp dport 7701 @th,88,8 1"

// On one link: a daemon that missed a room's announcements finds it by
// searching, and joins a room it has not heard of by searching first. The
// members drop announcements that arrive with TTL 1, so only answers to
// queries with a larger TTL get through: the search must expand, and the
// TTL it reports is the one that found the room.
func TestSearchOnOneLink(t *testing.T) {
	requireE2E(t)
	l := newLAN(t)
	alice, bob, carol := l.addHost("alice"), l.addHost("bob"), l.addHost("carol")
	bob.dropInput(announcementsTTL1, 100)
	carol.dropInput(announcementsTTL1, 100)
	alice.start("")
	bob.start("")
	alice.mustCtl("host", "hidden")

	var rooms []ctl.Room
	bob.ctlJSON(&rooms, "rooms")
	if len(rooms) != 0 {
		t.Fatalf("bob lists %+v before searching; its filter let announcements through", rooms)
	}
	var res ctl.SearchResult
	bob.ctlJSON(&res, "rooms", "--search", "hidden", "--max-ttl", "4")
	if res.TTL != 2 || len(res.Rooms) != 1 || res.Rooms[0].Name != "hidden" {
		t.Fatalf("search found %+v, want room hidden at TTL 2 (TTL-1 answers are dropped)", res)
	}
	// For docs/BENCHMARKS.md: one step of 300 ms ± 20 % and an answer
	// delay of 20..120 ms.
	t.Logf("search on one link, found at TTL 2 in %s", time.Duration(res.Elapsed))
	if _, err := bob.ctl("rooms", "--search", "nowhere", "--max-ttl", "2"); err == nil {
		t.Fatal("a search for a room nobody hosts succeeded")
	}

	// carol, started now, has not heard bob's answer either; joining, her
	// daemon searches first.
	carol.start("")
	var joined ctl.Room
	carol.ctlJSON(&joined, "join", "hidden")
	if !joined.Joined || joined.Name != "hidden" {
		t.Fatalf("carol joined %+v", joined)
	}
	var said ctl.SayResult
	carol.ctlJSON(&said, "say", "hidden", "found you")
	evs := alice.tail("hidden").waitSeq(said.Seq, 10*time.Second)
	if last := evs[len(evs)-1]; last.Text != "found you" || last.Nick != "carol" {
		t.Fatalf("alice's last event %+v, want carol's line", last)
	}

	// Restarted, carol rejoins by searching: she hears no announcement.
	carol.stop()
	carol.start("")
	eventually(t, 15*time.Second, "carol to rejoin after a restart", func() bool {
		var rooms []ctl.Room
		carol.ctlJSON(&rooms, "rooms")
		r := findRoom(rooms, "hidden")
		return r != nil && r.Joined && r.State == "connected"
	})

	var st ctl.Status
	alice.ctlJSON(&st, "status")
	if st.Counters["answers_sent"] < 2 || st.Counters["queries_received"] < 4 {
		t.Errorf("alice answered %d of %d queries; want answers to bob's and carol's", st.Counters["answers_sent"], st.Counters["queries_received"])
	}
	if st.Counters["answer_bytes_sent"] > 3*st.Counters["query_bytes_received"] {
		t.Errorf("alice sent %d answer bytes for %d query bytes", st.Counters["answer_bytes_sent"], st.Counters["query_bytes_received"])
	}
	carol.ctlJSON(&st, "status")
	if st.Counters["searches"] < 1 {
		t.Errorf("carol searched %d times since her restart, want at least 1", st.Counters["searches"])
	}
}

// After bob joins alice's room, mallory's room of the same name is listed
// apart and flagged KEY CHANGED, and a join by the bare name is never
// routed to it, even once alice's room is gone.
func TestPinnedRoomKeyChanged(t *testing.T) {
	requireE2E(t)
	l := newLAN(t)
	alice, bob, mallory := l.addHost("alice"), l.addHost("bob"), l.addHost("mallory")
	for _, h := range []*host{alice, bob, mallory} {
		h.start("")
	}
	alice.mustCtl("host", "ops")
	var joined ctl.Room
	bob.ctlJSON(&joined, "join", "ops")
	bob.mustCtl("leave", "ops")
	mallory.mustCtl("host", "ops")

	var rooms []ctl.Room
	eventually(t, 10*time.Second, "bob to list mallory's ops", func() bool {
		bob.ctlJSON(&rooms, "rooms")
		return len(rooms) == 2
	})
	for _, r := range rooms {
		if want := r.Ref != joined.Ref; r.KeyChanged != want {
			t.Errorf("%s: key_changed = %v, want %v", r.Ref, r.KeyChanged, want)
		}
	}
	if out := bob.mustCtl("rooms"); !strings.Contains(out, "KEY CHANGED") {
		t.Errorf("meshctl rooms does not show the marker:\n%s", out)
	}
	var st ctl.Status
	bob.ctlJSON(&st, "status")
	if st.Counters["announce_key_changed"] < 1 {
		t.Errorf("announce_key_changed = %d", st.Counters["announce_key_changed"])
	}

	// The bare name still means alice's room.
	bob.ctlJSON(&joined, "join", "ops")
	var ms ctl.Status
	mallory.ctlJSON(&ms, "status")
	if joined.KeyChanged || joined.Fingerprint == ms.Fingerprint {
		t.Fatalf("bob joined %s by the bare name", joined.Ref)
	}
	bob.mustCtl("leave", "ops")
	alice.stop()
	eventually(t, 10*time.Second, "alice's room to lapse at bob", func() bool {
		bob.ctlJSON(&rooms, "rooms")
		return len(rooms) == 1
	})
	if out, err := bob.ctl("join", "ops"); err == nil || !strings.Contains(err.Error(), "another host key") {
		t.Fatalf("join ops with only mallory's room: %q, %v; want a refusal naming the changed key", out, err)
	}
}
