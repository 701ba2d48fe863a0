package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl"
)

// tail follows a room with `meshctl tail ROOM --json` and collects what it
// prints.
type tail struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []ctl.Event
	wake   chan struct{}
	done   chan struct{}
	stderr bytes.Buffer
}

func (h *host) tail(room string) *tail {
	tl := &tail{t: h.t, wake: make(chan struct{}, 1), done: make(chan struct{})}
	tl.cmd = exec.Command(bins.meshctl, "-socket", h.socket, "tail", room, "--json")
	tl.cmd.Stderr = &tl.stderr
	out, err := tl.cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := tl.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() {
		defer close(tl.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev ctl.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				tl.t.Errorf("tail printed a line that is not an event: %q", sc.Text())
				continue
			}
			tl.mu.Lock()
			tl.events = append(tl.events, ev)
			tl.mu.Unlock()
			select {
			case tl.wake <- struct{}{}:
			default:
			}
		}
	}()
	h.t.Cleanup(func() {
		tl.cmd.Process.Kill()
		<-tl.done
		tl.cmd.Wait()
	})
	return tl
}

// sequenced returns the message, join and part events so far.
func (tl *tail) sequenced() []ctl.Event {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []ctl.Event
	for _, ev := range tl.events {
		switch ev.Kind {
		case ctl.EventMessage, ctl.EventJoin, ctl.EventPart:
			out = append(out, ev)
		}
	}
	return out
}

// waitSeq waits until the tail has printed sequence number seq.
func (tl *tail) waitSeq(seq uint64, within time.Duration) []ctl.Event {
	tl.t.Helper()
	deadline := time.After(within)
	for {
		evs := tl.sequenced()
		if len(evs) > 0 && evs[len(evs)-1].Seq >= seq {
			return evs
		}
		select {
		case <-tl.wake:
		case <-tl.done:
			tl.t.Fatalf("tail ended early: %s", tl.stderr.String())
		case <-deadline:
			tl.t.Fatalf("tail did not reach seq %d within %v; has %d events", seq, within, len(evs))
		}
	}
}

func findRoom(rs []ctl.Room, name string) *ctl.Room {
	for i := range rs {
		if rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// TestRoomOnOneLink is the first thing a person does with meshd: three
// hosts of one LAN, one hosts a room, two join it, all chat and see the
// same conversation in the same order; a fourth that did not join sees the
// room listed and nothing of what is said; a forged announcement is
// dropped and counted.
func TestRoomOnOneLink(t *testing.T) {
	requireE2E(t)
	l := newLAN(t)
	h1, h2, h3, h4 := l.addHost("h1"), l.addHost("h2"), l.addHost("h3"), l.addHost("h4")
	for _, h := range []*host{h2, h3, h4} {
		h.start("")
	}

	// Members list the room within a second of its host starting. They
	// watch their daemons' event streams, so the time is the daemon's,
	// not a polling interval's.
	appeared := make(chan time.Time, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, h := range []*host{h2, h3} {
		stream, err := (&ctl.Client{Socket: h.socket}).Events(ctx, "", 0, false)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		go func() {
			for {
				ev, err := stream.Next()
				if err != nil {
					return
				}
				if ev.Kind == ctl.EventRoomAppear && strings.HasPrefix(ev.Room, "general@") {
					appeared <- time.Now()
					return
				}
			}
		}()
	}
	h1.start("\n[[room]]\nname = \"general\"\n")
	ready := time.Now()
	for range 2 {
		select {
		case at := <-appeared:
			if d := at.Sub(ready); d > time.Second {
				t.Errorf("a member listed the room %v after its host was ready, want within 1s", d)
			} else {
				t.Logf("a member listed the room %v after its host was ready", d.Round(time.Millisecond))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a member never listed the room")
		}
	}

	var st1 ctl.Status
	h1.ctlJSON(&st1, "status")
	h2.mustCtl("join", "general", "--nick", "alice")
	h3.mustCtl("join", "general@"+st1.Fingerprint, "--nick", "bob")
	if _, err := h4.ctl("join", "general", "--nick", "alice"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("join with a nick in use: err = %v, want the host's refusal", err)
	}

	tails := []*tail{h1.tail("general"), h2.tail("general"), h3.tail("general")}

	// Interleaved lines from the host and both members.
	const rounds = 20
	var last uint64
	for i := range rounds {
		for _, h := range []*host{h1, h2, h3} {
			var res ctl.SayResult
			h.ctlJSON(&res, "say", "general", fmt.Sprintf("%s line %d", h.name, i))
			if res.Seq <= last {
				t.Fatalf("%s: say got seq %d after %d", h.name, res.Seq, last)
			}
			last = res.Seq
		}
	}

	var views [][]ctl.Event
	for i, tl := range tails {
		evs := tl.waitSeq(last, 10*time.Second)
		for k := 1; k < len(evs); k++ {
			if evs[k].Seq != evs[k-1].Seq+1 {
				t.Fatalf("tail %d: seq %d follows %d: a gap or a repeat", i, evs[k].Seq, evs[k-1].Seq)
			}
		}
		views = append(views, evs)
	}
	// Everyone saw the same records at the same places. The host's view
	// starts earliest, so it holds every other view.
	bySeq := make(map[uint64]ctl.Event)
	for _, ev := range views[0] {
		bySeq[ev.Seq] = ev
	}
	for i, v := range views[1:] {
		for _, ev := range v {
			h, ok := bySeq[ev.Seq]
			if !ok || h.Kind != ev.Kind || h.Nick != ev.Nick || h.Text != ev.Text {
				t.Fatalf("member %d: seq %d = %+v, host has %+v", i+1, ev.Seq, ev, h)
			}
		}
	}
	said := 0
	for _, ev := range views[2] {
		if ev.Kind == ctl.EventMessage {
			said++
		}
	}
	if said != 3*rounds {
		t.Errorf("bob's tail shows %d lines, want %d", said, 3*rounds)
	}

	// A daemon hosts and joins any number of rooms at once: alice's daemon
	// also hosts a room, which the first room's host joins.
	h2.mustCtl("host", "random")
	eventually(t, 5*time.Second, "h1 to list random", func() bool {
		var rs []ctl.Room
		h1.ctlJSON(&rs, "rooms")
		return findRoom(rs, "random") != nil
	})
	h1.mustCtl("join", "random", "--nick", "carol")
	var res ctl.SayResult
	h1.ctlJSON(&res, "say", "random", "two rooms at once")
	var who ctl.Who
	h2.ctlJSON(&who, "who", "random")
	if len(who.Members) != 2 || !who.Members[0].Host || who.Members[1].Nick != "carol" {
		t.Errorf("who random = %+v, want the host and carol", who.Members)
	}
	var rs1 []ctl.Room
	h1.ctlJSON(&rs1, "rooms")
	if g, r := findRoom(rs1, "general"), findRoom(rs1, "random"); g == nil || !g.Hosted || r == nil || !r.Joined {
		t.Errorf("h1 rooms = %+v, want general hosted and random joined", rs1)
	}

	// The daemon that did not join lists the room but gets none of it.
	var rs4 []ctl.Room
	h4.ctlJSON(&rs4, "rooms")
	r4 := findRoom(rs4, "general")
	if r4 == nil || r4.Fingerprint != st1.Fingerprint || r4.Joined {
		t.Fatalf("h4 rooms = %+v, want general@%s listed and not joined", rs4, st1.Fingerprint)
	}
	if _, err := h4.ctl("tail", "general"); err == nil || !strings.Contains(err.Error(), "join it first") {
		t.Errorf("tail on a room not joined: err = %v, want a refusal that says to join first", err)
	}
	var st4 ctl.Status
	h4.ctlJSON(&st4, "status")
	if n := st4.Counters["data_delivered"]; n != 0 {
		t.Errorf("h4 delivered %d records of a room it did not join", n)
	}

	// Even listening on the room's group, an outsider reads nothing.
	sn := h4.helper(ctx, "sniff", "MESHD_SNIFF_GROUP="+r4.Group, "MESHD_SNIFF_COUNT=1")
	snOut, err := sn.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(snOut)
	if !sc.Scan() || sc.Text() != "listening" {
		t.Fatalf("sniffer did not start: %q", sc.Text())
	}
	secret := "the password is swordfish"
	h2.mustCtl("say", "general", secret)
	if !sc.Scan() {
		t.Fatalf("sniffer saw no packet on %s", r4.Group)
	}
	pkt, err := hex.DecodeString(sc.Text())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pkt, []byte(secret)) || bytes.Contains(pkt, []byte("alice")) {
		t.Errorf("a packet on the room's group carries the cleartext: %q", pkt)
	}
	sn.Wait()

	// A forged announcement: the real host's Q, somebody else's signature.
	before := counters(h2)["announce_bad_sig"]
	forger := h4.helper(ctx, "forge",
		"MESHD_FORGE_Q="+st1.PublicKey,
		"MESHD_FORGE_ROOM=forged",
		"MESHD_FORGE_SERIAL=18446744073709551615",
		"MESHD_FORGE_GROUP="+st1.Discovery)
	if err := forger.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "h2 to count the forged announcement", func() bool {
		return counters(h2)["announce_bad_sig"] > before
	})
	cancel()
	forger.Wait()
	var rs2 []ctl.Room
	h2.ctlJSON(&rs2, "rooms")
	if r := findRoom(rs2, "forged"); r != nil {
		t.Errorf("forged room listed: %+v", r)
	}
}

func counters(h *host) map[string]int64 {
	var st ctl.Status
	h.ctlJSON(&st, "status")
	return st.Counters
}

// rssKiB reads a process's resident memory.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestAnnouncementFlood: a million forged announcements, each for a room
// never seen before, leave a daemon's memory under a ceiling, and the real
// room listed.
func TestAnnouncementFlood(t *testing.T) {
	requireE2E(t)
	const (
		packets = 1_000_000
		// The ceiling for a daemon under the race detector, which
		// multiplies Go's memory several times; see docs/BENCHMARKS.md.
		ceilingKiB = 96 << 10
	)
	l := newLAN(t)
	h, m, attacker := l.addHost("host"), l.addHost("m"), l.addHost("x")
	m.start("")
	h.start("\n[[room]]\nname = \"general\"\n")
	eventually(t, 10*time.Second, "m to list general", func() bool {
		var rs []ctl.Room
		m.ctlJSON(&rs, "rooms")
		return findRoom(rs, "general") != nil
	})
	var st ctl.Status
	m.ctlJSON(&st, "status")
	before := rssKiB(t, m.cmd.Process.Pid)

	fl := attacker.helper(context.Background(), "flood", fmt.Sprintf("MESHD_FLOOD_COUNT=%d", packets), "MESHD_FLOOD_GROUP="+st.Discovery)
	if out, err := fl.CombinedOutput(); err != nil {
		t.Fatalf("flood: %v: %s", err, out)
	}
	// The daemon works through its socket buffer; then it has seen all it
	// will see.
	eventually(t, 60*time.Second, "m to stop counting the flood", func() bool {
		c1 := counters(m)
		time.Sleep(200 * time.Millisecond)
		c2 := counters(m)
		return c1["announce_bad_sig"]+c1["announce_limited"] == c2["announce_bad_sig"]+c2["announce_limited"]
	})
	after := rssKiB(t, m.cmd.Process.Pid)
	c := counters(m)
	t.Logf("%d forged announcements sent; m counted %d over the check budget, %d with bad signatures; RSS %d KiB before, %d KiB after",
		packets, c["announce_limited"], c["announce_bad_sig"], before, after)
	if c["announce_limited"]+c["announce_bad_sig"] < packets/10 {
		t.Errorf("m counted only %d of %d forged announcements", c["announce_limited"]+c["announce_bad_sig"], packets)
	}
	if after > ceilingKiB {
		t.Errorf("RSS %d KiB after the flood, ceiling %d KiB", after, ceilingKiB)
	}
	var rs []ctl.Room
	m.ctlJSON(&rs, "rooms")
	if findRoom(rs, "general") == nil {
		t.Error("the real room is no longer listed")
	}
	for _, r := range rs {
		if strings.HasPrefix(r.Name, "flood-") {
			t.Fatalf("forged room listed: %s", r.Ref)
		}
	}
}
