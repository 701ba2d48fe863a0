package e2e

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// TestRoomsSharingATag: sealed packets name their room by a tag, the
// first 4 bytes of its id (wire.RoomTagLen), and two rooms may share one.
// Rooms of one host whose tags are the same share a data group too (its
// address comes from those bytes), so a member of both gets every packet
// of each under both. Each room's lines still reach that room alone,
// over multicast: each room tries the other's packets, which fail to open
// under its key and are counted.
func TestRoomsSharingATag(t *testing.T) {
	requireE2E(t)
	l := newLAN(t)
	h1, h2 := l.addHost("h1"), l.addHost("h2")
	h1.start("")
	h2.start("")
	var st ctl.Status
	h1.ctlJSON(&st, "status")
	q, err := hex.DecodeString(st.PublicKey)
	if err != nil || len(q) != ed25519.PublicKeySize {
		t.Fatalf("status: public key %q: %v", st.PublicKey, err)
	}
	names := tagTwins(t, q)
	for _, name := range names {
		h1.mustCtl("host", name)
	}
	for _, name := range names {
		h2.mustCtl("join", name+"@"+st.Fingerprint, "--nick", "m")
	}
	tails := []*tail{h2.tail(names[0]), h2.tail(names[1])}
	var before ctl.Status
	h2.ctlJSON(&before, "status")

	const rounds = 10
	var last [2]uint64
	for i := range rounds {
		for j, name := range names {
			var res ctl.SayResult
			h1.ctlJSON(&res, "say", name, fmt.Sprintf("%s %d", name, i))
			last[j] = res.Seq
		}
	}
	for j, tl := range tails {
		lines := 0
		for _, ev := range tl.waitSeq(last[j], 10*time.Second) {
			if ev.Kind != ctl.EventMessage {
				continue
			}
			if !strings.HasPrefix(ev.Text, names[j]+" ") {
				t.Errorf("room %s delivered %q, a line of the other room", names[j], ev.Text)
			}
			lines++
		}
		if lines != rounds {
			t.Errorf("room %s delivered %d lines, want %d", names[j], lines, rounds)
		}
	}
	// Each packet of one room fails to open under the other's key after
	// (or before) its own room took it.
	var after ctl.Status
	c := func(name string) int64 { return after.Counters[name] - before.Counters[name] }
	eventually(t, 5*time.Second, "each room to try the other's packets", func() bool {
		h2.ctlJSON(&after, "status")
		return c("data_auth_failed") >= 2*rounds
	})
	if c("blocks_decoded") < 2*rounds || c("data_fetched") != 0 {
		t.Errorf("over the lines, the member decoded %d blocks and fetched %d batches; want %d blocks, none fetched",
			c("blocks_decoded"), c("data_fetched"), 2*rounds)
	}
}

// tagTwins finds two room names of host key q whose room ids share their
// tag: a birthday search, about 77,000 names for even odds of a 32-bit
// collision, and 400,000 for all but 10^-8.
func tagTwins(t *testing.T, q ed25519.PublicKey) [2]string {
	t.Helper()
	seen := make(map[wire.RoomTag]string)
	for i := range 400_000 {
		name := fmt.Sprintf("t%x", i)
		tag := wire.TagOf(rooms.RoomID(q, name))
		if other, ok := seen[tag]; ok {
			return [2]string{other, name}
		}
		seen[tag] = name
	}
	t.Fatal("no two of 400,000 room names share a tag")
	return [2]string{}
}
