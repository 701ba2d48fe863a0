package e2e

import (
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

	var st ctl.Status
	alice.ctlJSON(&st, "status")
	if st.Counters["answers_sent"] < 2 || st.Counters["queries_received"] < 4 {
		t.Errorf("alice answered %d of %d queries; want answers to bob's and carol's", st.Counters["answers_sent"], st.Counters["queries_received"])
	}
	if st.Counters["answer_bytes_sent"] > 3*st.Counters["query_bytes_received"] {
		t.Errorf("alice sent %d answer bytes for %d query bytes", st.Counters["answer_bytes_sent"], st.Counters["query_bytes_received"])
	}
	carol.ctlJSON(&st, "status")
	if st.Counters["searches"] != 1 {
		t.Errorf("carol searched %d times, want 1", st.Counters["searches"])
	}
}
