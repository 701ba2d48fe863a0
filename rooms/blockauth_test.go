package rooms

import (
	"bytes"
	"testing"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// slottedMember returns a member of s's room with a slot in its blocks'
// MACs, as the host gives an admitted session, and that session.
func slottedMember(tb testing.TB, s *Sequencer) (*Member, *hostSession) {
	tb.Helper()
	sess := new(hostSession)
	s.mu.Lock()
	slot, key, err := s.slotLocked(sess)
	w := &wire.Welcome{Room: s.id, Epoch: s.key.epoch, Key: s.key.key, Next: s.next, Block: s.block, Group: s.group, MACSlot: slot, MACKey: key}
	s.mu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	return welcomedMember(tb, s, w), sess
}

// sendLines has s send lines 200-byte lines as one block and returns its
// packets and its payload as the host made it.
func sendLines(tb testing.TB, s *Sequencer, sink *pktSink, lines int) (pkts [][]byte, payload []byte) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for range lines {
		if _, err := s.submitLocked(wire.Record{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "ann", Text: pathLine}); err != nil {
			tb.Fatal(err)
		}
	}
	s.flushLocked()
	s.sendBlockLocked()
	s.sendQueuedLocked()
	sb := s.blocks[s.block%sentBlocks]
	payload, err := decodeBlock(sb.shards, sb.k, nil)
	if err != nil {
		tb.Fatal(err)
	}
	pkts, sink.pkts = sink.pkts, nil
	return pkts, payload
}

// authKind is how a block's payload is authenticated: wire.AuthSig or
// wire.AuthMACs, and how many MACs it carries.
func authKind(tb testing.TB, payload []byte) (kind byte, macs int) {
	tb.Helper()
	_, auth, err := wire.SplitBlock(payload)
	if err != nil {
		tb.Fatal(err)
	}
	if auth.Sig != nil {
		return wire.AuthSig, 0
	}
	return wire.AuthMACs, len(auth.MACs) / wire.MACLen
}

// TestSmallBlockIsMACed: once its members have slots, a room's lone line
// goes out under each member's MAC rather than the host's signature, and
// each member delivers it; a block bigger than macBlockMax is signed, and
// delivered as well.
func TestSmallBlockIsMACed(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	a, _ := slottedMember(t, s)
	b, _ := slottedMember(t, s)

	pkts, payload := sendLines(t, s, sink, 1)
	if kind, n := authKind(t, payload); kind != wire.AuthMACs || n != 2 {
		t.Fatalf("a lone line's block: authentication %d with %d MACs, want MACs (%d) for 2 members", kind, n, wire.AuthMACs)
	}
	for _, m := range []*Member{a, b} {
		for _, p := range pkts {
			m.HandlePacket(p)
		}
	}
	lines := 1 + macBlockMax/len(pathLine)
	pkts, payload = sendLines(t, s, sink, lines)
	if kind, _ := authKind(t, payload); kind != wire.AuthSig {
		t.Fatalf("a block of %d lines (%d bytes): authentication %d, want the signature (%d)", lines, len(payload), kind, wire.AuthSig)
	}
	for i, m := range []*Member{a, b} {
		for _, p := range pkts {
			m.HandlePacket(p)
		}
		st := m.cfg.Stats
		if st.DataDelivered.Load() != int64(1+lines) || st.DataBadSig.Load() != 0 {
			t.Errorf("member %d: %d lines delivered, data_bad_sig %d; want %d, 0", i, st.DataDelivered.Load(), st.DataBadSig.Load(), 1+lines)
		}
	}
}

// TestRoomWithoutSlotsIsSigned: a room with no member, and a room one of
// whose members found every slot taken, sign even a lone line; slots
// freed are taken again.
func TestRoomWithoutSlotsIsSigned(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	if _, payload := sendLines(t, s, sink, 1); payload[len(payload)-1] != wire.AuthSig {
		t.Fatalf("a room without members: authentication %d, want the signature", payload[len(payload)-1])
	}
	sessions := make([]*hostSession, wire.MaxMACSlots+1)
	s.mu.Lock()
	for i := range sessions {
		sessions[i] = new(hostSession)
		slot, _, err := s.slotLocked(sessions[i])
		if want := uint8(i); i == wire.MaxMACSlots {
			want = wire.NoMACSlot
		} else if slot != want || err != nil {
			t.Fatalf("member %d: slot %d, %v; want %d", i, slot, err, want)
		}
	}
	s.mu.Unlock()
	if _, payload := sendLines(t, s, sink, 1); payload[len(payload)-1] != wire.AuthSig {
		t.Fatalf("%d members, one without a slot: authentication %d, want the signature", len(sessions), payload[len(payload)-1])
	}
	s.mu.Lock()
	s.unslotLocked(sessions[5])
	s.unslotLocked(sessions[wire.MaxMACSlots])
	s.mu.Unlock()
	if _, payload := sendLines(t, s, sink, 1); payload[len(payload)-1] != wire.AuthMACs {
		t.Fatalf("every member with a slot again: authentication %d, want MACs", payload[len(payload)-1])
	}
	s.mu.Lock()
	slot, _, err := s.slotLocked(new(hostSession))
	s.mu.Unlock()
	if slot != 5 || err != nil {
		t.Fatalf("a member after slot 5 was freed: slot %d, %v; want 5", slot, err)
	}
}

// TestForgedMACBlockIsDropped: a member holds the room key and its own
// MAC key, so it can seal shards that open and MAC a block for itself; a
// block it makes, with the other member's MAC copied from a genuine block
// or made up, is counted as badly signed by that member and none of its
// lines is delivered. A block with no MAC for the member's slot, or zeros
// there, is dropped too, counted as MACed for others only.
func TestForgedMACBlockIsDropped(t *testing.T) {
	sink := new(pktSink)
	s := newPathHost(t, sink)
	forger, _ := slottedMember(t, s)
	victim, _ := slottedMember(t, s)
	if forger.mac.slot != 0 || victim.mac.slot != 1 {
		t.Fatalf("slots %d and %d; the forgeries assume 0 and 1", forger.mac.slot, victim.mac.slot)
	}
	pkts, genuine := sendLines(t, s, sink, 1)
	for _, p := range pkts {
		victim.HandlePacket(p)
	}
	_, auth, err := wire.SplitBlock(genuine)
	if err != nil {
		t.Fatal(err)
	}

	s.mu.Lock()
	key, room, next, block := s.key, s.id, s.next, s.block
	s.mu.Unlock()
	forged, err := signBatch(nil, newTestIdentity(t), batchOpts(room), next, []wire.Record{{Kind: wire.KindMessage, KeyID: s.keyID, Nick: "host", Text: "forged"}})
	if err != nil {
		t.Fatal(err)
	}
	batches := wire.AppendBlockBatch(nil, forged[:len(forged)-wire.SigLen])
	own := forger.mac.appendMAC(nil, newBlockDigester().digest(&room, batches))
	for i, macs := range [][]byte{
		append(own, auth.MAC(victim.mac.slot)...),               // the victim's from the genuine block
		append(own, bytes.Repeat([]byte{0x5a}, wire.MACLen)...), // made up
		own, // none for the victim's slot
		append(own, make([]byte, wire.MACLen)...), // zeros: the victim's slot freed
	} {
		payload, err := wire.AppendBlockMACs(bytes.Clone(batches), macs)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkt := range sealBlock(t, key, room, block+1+uint64(i), payload) {
			victim.HandlePacket(pkt)
		}
	}
	st := victim.cfg.Stats
	if st.DataBadSig.Load() != 2 || st.DataNoMAC.Load() != 2 || st.DataDelivered.Load() != 1 {
		t.Errorf("blocks MACed by a member: data_bad_sig %d, data_no_mac %d, %d lines delivered; want 2, 2 (none for its slot), only the genuine one",
			st.DataBadSig.Load(), st.DataNoMAC.Load(), st.DataDelivered.Load())
	}
}

// TestMACsAfterReconnect: over real sessions, a member checks the MACs of
// a quiet room's blocks, and after its session ends and it joins again,
// with a new key and maybe another slot, it checks those of the blocks
// that follow; no block is taken for a forgery on the way.
func TestMACsAfterReconnect(t *testing.T) {
	tr := newTestRoom(t, memnet.New(12), "general")
	alice, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tr.join("10.0.0.3", "bob", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	// say has the host say a line and waits for alice to decode a block
	// holding it from multicast, not only to receive it over her session.
	say := func(text string) {
		t.Helper()
		decoded := alice.stats.BlocksDecoded.Load()
		seq, err := tr.seq.Say(text)
		if err != nil {
			t.Fatal(err)
		}
		tr.seq.flush()
		alice.rec.waitFor(t, text, func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= seq })
		waitUntil(t, "alice to decode the block of "+text, func() bool { return alice.stats.BlocksDecoded.Load() > decoded })
	}
	say("before")
	alice.m.mu.Lock()
	conn, slot := alice.m.conn, alice.m.mac
	alice.m.mu.Unlock()
	if slot == nil {
		t.Fatal("alice was admitted without a MAC slot")
	}
	conn.Close()
	waitUntil(t, "alice to join again", func() bool {
		alice.m.mu.Lock()
		defer alice.m.mu.Unlock()
		return alice.m.conn != conn && alice.m.state == StateConnected
	})
	alice.m.mu.Lock()
	again := alice.m.mac
	alice.m.mu.Unlock()
	if again == nil || again == slot {
		t.Fatalf("after joining again alice has MAC slot %v, want a new one (had %v)", again, slot)
	}
	say("after")
	if n := alice.stats.DataBadSig.Load(); n != 0 {
		t.Errorf("alice's data_bad_sig = %d, want 0: the host's own blocks failed her check", n)
	}
	if n := bob.stats.DataBadSig.Load() + bob.stats.DataNoMAC.Load(); n != 0 {
		t.Errorf("bob, whose session went on, dropped %d blocks as not MACed for him", n)
	}
}
