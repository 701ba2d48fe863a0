package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms/wire"
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

// search asks h's daemon to search for room with the given TTL ceiling
// (0: the daemon's). It returns the result, or the HTTP status of the
// daemon's refusal.
func search(h *host, room string, maxTTL int) (ctl.SearchResult, int) {
	h.t.Helper()
	res, err := h.client().Search(context.Background(), ctl.SearchRequest{Name: room, MaxTTL: maxTTL})
	var apiErr *ctl.APIError
	if errors.As(err, &apiErr) {
		return res, apiErr.Status
	}
	if err != nil {
		h.t.Fatalf("%s: search %s: %v", h.name, room, err)
	}
	return res, http.StatusOK
}

// TestRoutedSearch: over routers that forward multicast, decrementing its
// TTL, a search finds rooms 0, 1, 2 and 3 routers away with the first TTL
// of its steps (1, 2, 4, ...) that reaches them, not before, and not at
// all when its ceiling is below their distance. Rooms are announced with
// TTL 1, so only the search reaches across the routers.
func TestRoutedSearch(t *testing.T) {
	requireE2E(t)
	tp := newChain(t, 3)
	for _, r := range tp.routers {
		r.forwardMulticast(discoveryGroup, dataGroups)
	}
	s := tp.addHost(0, "s")
	hosts := []*host{tp.addHost(0, "h0"), tp.addHost(1, "h1"), tp.addHost(2, "h2"), tp.addHost(3, "h3")}
	s.start("")
	for d, h := range hosts {
		// A second room 2 routers away is searched with the ceiling 3 only,
		// so that no daemon on the way holds it from an earlier search.
		extra := ""
		if d == 2 {
			extra = "[[room]]\nname = \"room2b\"\n"
		}
		h.start(fmt.Sprintf("[[room]]\nname = \"room%d\"\n%s", d, extra))
	}

	// Below its distance, a room is not found, and meshctl says so.
	for d := 1; d <= 3; d++ {
		room := fmt.Sprintf("room%d", d)
		if res, code := search(s, room, d); code != http.StatusNotFound {
			t.Errorf("search %s (%d routers away) with ceiling %d: status %d, %+v; want 404", room, d, d, code, res)
		}
	}
	out, err := s.ctl("rooms", "--search", "room3", "--max-ttl", "2")
	if err == nil || !strings.Contains(err.Error(), "room3") {
		t.Errorf("meshctl rooms --search room3 --max-ttl 2: %v, %q; want a failure that names the room", err, out)
	}

	// The default ceiling finds each with the first sufficient step: a
	// router takes 1 off the TTL and passes on only what it leaves above 0.
	wantTTL := []int{1, 2, 4, 4}
	for d := range hosts {
		room := fmt.Sprintf("room%d", d)
		res, code := search(s, room, 0)
		if code != http.StatusOK {
			t.Errorf("search %s (%d routers away): status %d", room, d, code)
			continue
		}
		if res.TTL != wantTTL[d] || findRoom(res.Rooms, room) == nil {
			t.Errorf("search %s (%d routers away) = TTL %d, rooms %+v; want TTL %d and the room", room, d, res.TTL, res.Rooms, wantTTL[d])
		}
		t.Logf("found %s, %d routers away, at TTL %d in %v", room, d, res.TTL, time.Duration(res.Elapsed))
	}
	// The ceiling itself is the last step: 1, 2, 3.
	if res, code := search(s, "room2b", 3); code != http.StatusOK || res.TTL != 3 {
		t.Errorf("search room2b (2 routers away) with ceiling 3: status %d, TTL %d; want found at TTL 3", code, res.TTL)
	}
	// meshctl prints what it found.
	if out := s.mustCtl("rooms", "--search", "room3"); !strings.Contains(out, "room3") {
		t.Errorf("meshctl rooms --search room3 printed %q", out)
	}
	var st ctl.Status
	s.ctlJSON(&st, "status")
	if st.Counters["searches"] < 9 {
		t.Errorf("s counted %d searches, want at least 9", st.Counters["searches"])
	}
}

// TestQueryFlood: 10,000 queries a second for 3 s, from 2,000 source
// addresses, for a room the daemon holds: it answers with at most 3 times
// the bytes the queries brought, and its memory stays under a ceiling.
func TestQueryFlood(t *testing.T) {
	requireE2E(t)
	const (
		rate, seconds = 10_000, 3
		sources       = 2000
	)
	// Measured about 14 MiB after the flood, 36 MiB under the race
	// detector; see docs/BENCHMARKS.md.
	ceilingKiB := 32 << 10
	if raceEnabled {
		ceilingKiB = 80 << 10
	}
	l := newLAN(t)
	h, x := l.addHost("h"), l.addHost("x")
	h.start("[[room]]\nname = \"general\"\n")
	// The sources: addresses outside the LAN's subnet, on x's eth0.
	var batch strings.Builder
	for i := range sources {
		fmt.Fprintf(&batch, "addr add 10.99.%d.%d/32 dev eth0\n", i/250, i%250+1)
	}
	cmd := exec.Command("ip", "-n", x.ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("adding source addresses: %v: %s", err, out)
	}
	var st ctl.Status
	h.ctlJSON(&st, "status")
	q, err := wire.AppendQuery(nil, &wire.Query{Nonce: 1, TTL: 1, Room: "general"})
	if err != nil {
		t.Fatal(err)
	}
	before := rssKiB(t, h.cmd.Process.Pid)
	c0 := counters(h)

	fl := x.helper(context.Background(), "qflood", "MESHD_QFLOOD_TO="+st.Discovery, "MESHD_QFLOOD_HEX="+hex.EncodeToString(q),
		fmt.Sprintf("MESHD_QFLOOD_RATE=%d", rate), fmt.Sprintf("MESHD_QFLOOD_SECONDS=%d", seconds))
	out, err := fl.CombinedOutput()
	if err != nil {
		t.Fatalf("qflood: %v: %s", err, out)
	}
	// The daemon works through its socket buffer; then it has seen all it
	// will see.
	var c map[string]int64
	eventually(t, 30*time.Second, "h to stop counting queries", func() bool {
		c1 := counters(h)
		time.Sleep(200 * time.Millisecond)
		c = counters(h)
		return c1["queries_received"] == c["queries_received"]
	})
	after := rssKiB(t, h.cmd.Process.Pid)
	got := c["queries_received"] - c0["queries_received"]
	qBytes := c["query_bytes_received"] - c0["query_bytes_received"]
	aBytes := c["answer_bytes_sent"] - c0["answer_bytes_sent"]
	t.Logf("%s queries sent; h received %d (%d bytes), limited %d, answered %d times (%d bytes); RSS %d KiB before, %d KiB after",
		strings.TrimSpace(string(out)), got, qBytes, c["queries_limited"]-c0["queries_limited"],
		c["answers_sent"]-c0["answers_sent"], aBytes, before, after)
	if got < rate*seconds/2 {
		t.Errorf("h received only %d of %d queries", got, rate*seconds)
	}
	if aBytes > 3*qBytes {
		t.Errorf("h sent %d bytes of answers to %d bytes of queries, more than 3 times", aBytes, qBytes)
	}
	if c["answers_sent"] == c0["answers_sent"] {
		t.Error("h answered none of the queries for a room it holds")
	}
	if after > ceilingKiB {
		t.Errorf("RSS %d KiB after the flood, ceiling %d KiB", after, ceilingKiB)
	}
}
