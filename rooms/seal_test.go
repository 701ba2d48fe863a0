package rooms

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"meshd/rooms/wire"
)

func newTestEpochKey(t testing.TB, epoch uint64) *epochKey {
	t.Helper()
	var key [chacha20poly1305.KeySize]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatal(err)
	}
	k, err := newEpochKey(epoch, key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	sealRoom  = [wire.RoomIDLen]byte{'r', 'o', 'o', 'm', 0, 0, 0, 1}
	sealTag   = wire.TagOf(sealRoom)
	otherRoom = [wire.RoomIDLen]byte{'r', 'o', 'o', 'm', 0, 0, 0, 2}
)

func testShard(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func mustSealShard(t testing.TB, k *epochKey, si wire.ShardInfo, shard []byte) []byte {
	t.Helper()
	pkt, err := sealShard(nil, new(nonceBuf), k, sealTag, si, shard)
	if err != nil {
		t.Fatalf("sealShard(%+v) = %v, want nil", si, err)
	}
	return pkt
}

func mustSealHeartbeat(t testing.TB, k *epochKey, counter uint64, hb wire.Heartbeat) []byte {
	t.Helper()
	pkt, err := sealHeartbeat(nil, new(nonceBuf), k, sealTag, counter, hb)
	if err != nil {
		t.Fatalf("sealHeartbeat(counter %d) = %v, want nil", counter, err)
	}
	return pkt
}

// openPacket opens a shard or heartbeat packet as a receiver does: it
// parses the cleartext headers, then opens the rest.
func openPacket(scratch []byte, k *epochKey, pkt []byte) (sealed, []byte, error) {
	h, err := parseSealed(pkt)
	if err != nil {
		return h, nil, err
	}
	pt, err := openSealed(scratch, new(nonceBuf), k, &h, pkt)
	return h, pt, err
}

func TestSealShardOpen(t *testing.T) {
	k := newTestEpochKey(t, Epoch(3, 1))
	tests := []struct {
		name  string
		si    wire.ShardInfo
		shard []byte
	}{
		{"first", wire.ShardInfo{Block: 1, Index: 0, K: 1, Sent: 1}, testShard(202)},
		{"parity", wire.ShardInfo{Block: 9, Index: 5, K: 3, Sent: 4}, testShard(wire.ShardData + 2)},
		{"empty", wire.ShardInfo{Block: 2, Index: 0, K: 1, Sent: 1}, nil},
		{"last block", wire.ShardInfo{Block: wire.MaxBlockNo, Index: wire.MaxShards - 1, K: wire.MaxBlockShards, Sent: wire.MaxShards}, testShard(300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, 0, wire.MaxPacket)
			pkt, err := sealShard(buf, new(nonceBuf), k, sealTag, tt.si, tt.shard)
			if err != nil {
				t.Fatalf("sealShard = %v, want nil", err)
			}
			if want := wire.ShardHeaderLen + len(tt.shard) + wire.TagLen; len(pkt) != want {
				t.Errorf("shard packet of %d bytes, want %d", len(pkt), want)
			}
			if len(tt.shard) > 16 && bytes.Contains(pkt, tt.shard[:16]) {
				t.Errorf("shard packet shows the shard in the clear")
			}
			h, pt, err := openPacket(nil, k, pkt)
			if err != nil {
				t.Fatalf("open(sealShard(…)) = %v, want nil", err)
			}
			if want := (wire.SealedHeader{Type: wire.TypeShard, Room: sealTag, Epoch: k.sealedEpoch()}); h.SealedHeader != want {
				t.Errorf("header = %+v, want %+v", h.SealedHeader, want)
			}
			if h.shard != tt.si {
				t.Errorf("shard info = %+v, want %+v", h.shard, tt.si)
			}
			if !bytes.Equal(pt, tt.shard) {
				t.Errorf("opened shard = %x, want %x", pt, tt.shard)
			}
		})
	}
}

func TestSealHeartbeatOpen(t *testing.T) {
	k := newTestEpochKey(t, Epoch(1, 0))
	for _, hb := range []wire.Heartbeat{{Next: 1}, {Next: 42, LastBlock: 7}, {Next: ^uint64(0), LastBlock: ^uint64(0)}} {
		pkt := mustSealHeartbeat(t, k, 3, hb)
		if want := wire.HeartbeatHeaderLen + wire.HeartbeatLen + wire.TagLen; len(pkt) != want {
			t.Errorf("heartbeat packet of %d bytes, want %d", len(pkt), want)
		}
		h, pt, err := openPacket(nil, k, pkt)
		if err != nil {
			t.Fatalf("open(sealHeartbeat(%+v)) = %v, want nil", hb, err)
		}
		if want := (wire.SealedHeader{Type: wire.TypeHeartbeat, Room: sealTag, Epoch: k.sealedEpoch()}); h.SealedHeader != want || h.n != 3 {
			t.Errorf("header = %+v, counter %d, want %+v, 3", h.SealedHeader, h.n, want)
		}
		got, err := wire.ParseHeartbeat(pt)
		if err != nil || got != hb {
			t.Errorf("ParseHeartbeat(opened) = %+v, %v, want %+v, nil", got, err, hb)
		}
	}
}

// TestSealedRejectsEveryFlip flips each bit pattern of each byte of a
// sealed shard and heartbeat: the packet as received, headers parsed from
// it, must fail to open. Opening it with the header of the unflipped
// packet must fail too: the whole cleartext header is associated data.
// A flipped block number, index or heartbeat counter also names another
// nonce.
func TestSealedRejectsEveryFlip(t *testing.T) {
	k := newTestEpochKey(t, 1)
	pkts := map[string][]byte{
		"shard":     mustSealShard(t, k, wire.ShardInfo{Block: 2, Index: 1, K: 2, Sent: 3}, testShard(300)),
		"heartbeat": mustSealHeartbeat(t, k, 6, wire.Heartbeat{Next: 10, LastBlock: 2}),
	}
	scratch := make([]byte, 0, wire.MaxPacket)
	for name, pkt := range pkts {
		t.Run(name, func(t *testing.T) {
			h0, err := parseSealed(pkt)
			if err != nil {
				t.Fatal(err)
			}
			for i := range pkt {
				for _, x := range []byte{0x01, 0x80, 0xff} {
					m := bytes.Clone(pkt)
					m[i] ^= x
					if _, err := openSealed(scratch, new(nonceBuf), k, &h0, m); !errors.Is(err, errAuth) {
						t.Errorf("openSealed(byte %d ^ %#x) = %v, want %v", i, x, err, errAuth)
					}
					// As received: the header may no longer parse, which
					// rejects the packet before any opening.
					h, err := parseSealed(m)
					if err != nil || h.Type != h0.Type {
						continue
					}
					if _, err := openSealed(scratch, new(nonceBuf), k, &h, m); !errors.Is(err, errAuth) {
						t.Errorf("openSealed(parsed, byte %d ^ %#x) = %v, want %v", i, x, err, errAuth)
					}
				}
			}
		})
	}
}

func TestSealedRejectsOutsiders(t *testing.T) {
	k := newTestEpochKey(t, 1)
	other := newTestEpochKey(t, 1) // the same epoch number, another key
	si := wire.ShardInfo{Block: 1, Index: 0, K: 1, Sent: 1}
	shard := mustSealShard(t, k, si, testShard(100))
	hb := mustSealHeartbeat(t, k, 2, wire.Heartbeat{Next: 1})

	random := wire.AppendShardHeader(nil, wire.SealedHeader{Room: sealTag, Epoch: k.sealedEpoch()}, si)
	random = append(random, make([]byte, 100)...)
	if _, err := rand.Read(random[wire.ShardHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		k    *epochKey
		pkt  []byte
	}{
		{"random bytes", k, random},
		{"bare tag", k, random[:wire.ShardHeaderLen+wire.TagLen]},
		{"shard sealed under another key", k, mustSealShard(t, other, si, testShard(100))},
		{"shard opened with another key", other, shard},
		{"heartbeat sealed under another key", k, mustSealHeartbeat(t, other, 2, wire.Heartbeat{Next: 1})},
		{"heartbeat opened with another key", other, hb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := openPacket(nil, tt.k, tt.pkt); !errors.Is(err, errAuth) {
				t.Errorf("open = %v, want %v", err, errAuth)
			}
		})
	}
}

// TestSealedNonceDomains: a shard and a heartbeat whose numbers coincide
// (block 0, index 2 and counter 2 would, were they one domain; block 1,
// index 0 is 256) never share a nonce, and a heartbeat cut as a shard, or
// a shard as a heartbeat, does not open.
func TestSealedNonceDomains(t *testing.T) {
	var bs, bh nonceBuf
	si := wire.ShardInfo{Block: 1, Index: 0, K: 1, Sent: 1}
	if ns, nh := nonce(&bs, wire.TypeShard, shardNonceNo(si)), nonce(&bh, wire.TypeHeartbeat, shardNonceNo(si)); bytes.Equal(ns, nh) {
		t.Errorf("shard and heartbeat nonce of number %d are both %x", shardNonceNo(si), ns)
	}
	// Every (block, index) has its own number.
	seen := map[uint64]wire.ShardInfo{}
	for _, b := range []uint64{1, 2, 255, 256, wire.MaxBlockNo - 1, wire.MaxBlockNo} {
		for _, i := range []uint8{0, 1, wire.MaxShards - 1, 255} {
			si := wire.ShardInfo{Block: b, Index: i}
			if o, ok := seen[shardNonceNo(si)]; ok {
				t.Errorf("shards %+v and %+v share nonce number %d", si, o, shardNonceNo(si))
			}
			seen[shardNonceNo(si)] = si
		}
	}

	k := newTestEpochKey(t, 1)
	shard := mustSealShard(t, k, si, testShard(100))
	hb := mustSealHeartbeat(t, k, 256, wire.Heartbeat{Next: 1})
	// The heartbeat with the shard's header length and number, and the
	// other way round.
	asShard := sealed{SealedHeader: wire.SealedHeader{Type: wire.TypeShard}, hdrLen: wire.ShardHeaderLen, n: 256}
	if _, err := openSealed(nil, new(nonceBuf), k, &asShard, hb); !errors.Is(err, errAuth) {
		t.Errorf("openSealed(heartbeat as shard) = %v, want %v", err, errAuth)
	}
	asHeartbeat := sealed{SealedHeader: wire.SealedHeader{Type: wire.TypeHeartbeat}, hdrLen: wire.HeartbeatHeaderLen, n: 256}
	if _, err := openSealed(nil, new(nonceBuf), k, &asHeartbeat, shard); !errors.Is(err, errAuth) {
		t.Errorf("openSealed(shard as heartbeat) = %v, want %v", err, errAuth)
	}
}

// TestSealShardRepairIdentical: a shard sealed again, as a repair, is the
// same packet, bytes and all: its nonce is repeated only with the same
// plaintext and associated data (seal.go, nonce).
func TestSealShardRepairIdentical(t *testing.T) {
	k := newTestEpochKey(t, Epoch(2, 5))
	si := wire.ShardInfo{Block: 77, Index: 4, K: 3, Sent: 4}
	first := mustSealShard(t, k, si, testShard(500))
	if again := mustSealShard(t, k, si, testShard(500)); !bytes.Equal(again, first) {
		t.Errorf("shard sealed again = %x, want the first packet %x", again, first)
	}
}

func TestSealCounterExhausted(t *testing.T) {
	k := newTestEpochKey(t, 1)
	buf := make([]byte, 0, wire.MaxPacket)
	for _, b := range []uint64{0, wire.MaxBlockNo + 1, ^uint64(0)} {
		si := wire.ShardInfo{Block: b, Index: 0, K: 1, Sent: 1}
		if pkt, err := sealShard(buf, new(nonceBuf), k, sealTag, si, testShard(10)); !errors.Is(err, errCounterExhausted) || pkt != nil {
			t.Errorf("sealShard(block %d) = %x, %v, want nil, %v", b, pkt, err, errCounterExhausted)
		}
	}
	for _, c := range []uint64{0, 1 << 32, ^uint64(0)} {
		if pkt, err := sealHeartbeat(buf, new(nonceBuf), k, sealTag, c, wire.Heartbeat{Next: 1}); !errors.Is(err, errCounterExhausted) || pkt != nil {
			t.Errorf("sealHeartbeat(counter %d) = %x, %v, want nil, %v", c, pkt, err, errCounterExhausted)
		}
	}
	// The last block and counter are used, with nonces of their own.
	h, _, err := openPacket(nil, k, mustSealShard(t, k, wire.ShardInfo{Block: wire.MaxBlockNo, Index: 0, K: 1, Sent: 1}, testShard(10)))
	if err != nil || h.shard.Block != wire.MaxBlockNo {
		t.Errorf("last block = %d, %v, want %d", h.shard.Block, err, uint64(wire.MaxBlockNo))
	}
	h, _, err = openPacket(nil, k, mustSealHeartbeat(t, k, 1<<32-1, wire.Heartbeat{Next: 1}))
	if err != nil || h.n != 1<<32-1 {
		t.Errorf("last heartbeat counter = %d, %v, want %d", h.n, err, uint64(1<<32-1))
	}
}

func TestSealShardReusesBuffer(t *testing.T) {
	k := newTestEpochKey(t, 1)
	buf := make([]byte, 0, wire.MaxPacket)
	pkt, err := sealShard(buf, new(nonceBuf), k, sealTag, wire.ShardInfo{Block: 1, K: 1, Sent: 1}, testShard(300))
	if err != nil {
		t.Fatal(err)
	}
	if &pkt[0] != &buf[:1][0] {
		t.Errorf("sealShard allocated although cap(buf) = %d sufficed", cap(buf))
	}
	scratch := make([]byte, 0, wire.MaxPacket)
	_, pt, err := openPacket(scratch, k, pkt)
	if err != nil {
		t.Fatal(err)
	}
	if &pt[0] != &scratch[:1][0] {
		t.Errorf("openSealed allocated although cap(scratch) = %d sufficed", cap(scratch))
	}
}

func sampleNackBody(t testing.TB) (*wire.Nack, []byte) {
	t.Helper()
	n := &wire.Nack{
		KeyID:   [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Session: 0x1122334455667788,
		Counter: 7,
		Entries: []wire.NackEntry{{Block: 3, Missing: 1}, {Block: 4, Missing: wire.MissingAll}},
	}
	body, err := wire.AppendNackBody(nil, n)
	if err != nil {
		t.Fatal(err)
	}
	return n, body
}

func mustSealNack(t testing.TB, k *epochKey, room [wire.RoomIDLen]byte, body []byte) []byte {
	t.Helper()
	pkt, err := sealNack(nil, k, room, body)
	if err != nil {
		t.Fatalf("sealNack = %v, want nil", err)
	}
	return pkt
}

// openNackPacket opens a NACK as a receiver does: it parses the cleartext
// header, then opens the rest.
func openNackPacket(k *epochKey, pkt []byte, n *wire.Nack) (wire.NackHeader, error) {
	h, err := wire.ParseNackHeader(pkt)
	if err != nil {
		return h, err
	}
	return h, openNack(nil, k, h, pkt, n)
}

func TestSealNackOpen(t *testing.T) {
	k := newTestEpochKey(t, Epoch(2, 5))
	want, body := sampleNackBody(t)
	pkt := mustSealNack(t, k, sealRoom, body)
	if n := wire.NackHeaderLen + wire.NonceXLen + len(body) + wire.TagLen; len(pkt) != n {
		t.Errorf("NACK packet of %d bytes, want %d", len(pkt), n)
	}
	var got wire.Nack
	h, err := openNackPacket(k, pkt, &got)
	if err != nil {
		t.Fatalf("openNack(sealNack(…)) = %v, want nil", err)
	}
	if h.Room != sealRoom || h.Epoch != uint32(k.epoch) {
		t.Errorf("header = room %x epoch %d, want %x, %d", h.Room, h.Epoch, sealRoom, uint32(k.epoch))
	}
	if got.KeyID != want.KeyID || got.Session != want.Session || got.Counter != want.Counter || !slices.Equal(got.Entries, want.Entries) {
		t.Errorf("openNack = %+v, want %+v", got, *want)
	}

	// Random nonces: the same body sealed twice differs.
	again := mustSealNack(t, k, sealRoom, body)
	if bytes.Equal(pkt, again) {
		t.Errorf("sealNack sealed the same body twice to the same bytes %x", pkt)
	}
	h2, err := wire.ParseNackHeader(again)
	if err != nil || h2.Nonce == h.Nonce {
		t.Errorf("two NACKs share the nonce %x (%v)", h.Nonce, err)
	}

	// The NACK key is not the key of the host's packets.
	if bytes.Contains(pkt, body[:wire.KeyIDLen]) {
		t.Errorf("NACK packet shows the key id in the clear")
	}
}

func TestNackRejectsEveryFlip(t *testing.T) {
	k := newTestEpochKey(t, 1)
	_, body := sampleNackBody(t)
	pkt := mustSealNack(t, k, sealRoom, body)
	var n wire.Nack
	for i := range pkt {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			m := bytes.Clone(pkt)
			m[i] ^= x
			_, err := openNackPacket(k, m, &n)
			if err == nil {
				t.Errorf("openNack(byte %d ^ %#x) = nil, want an error", i, x)
				continue
			}
			// Past the packet header, only the AEAD can catch a flip.
			if i >= wire.HeaderLen && !errors.Is(err, errAuth) {
				t.Errorf("openNack(byte %d ^ %#x) = %v, want %v", i, x, err, errAuth)
			}
		}
	}
}

func TestNackRejectsOutsiders(t *testing.T) {
	k := newTestEpochKey(t, 1)
	other := newTestEpochKey(t, 1)
	_, body := sampleNackBody(t)
	pkt := mustSealNack(t, k, sealRoom, body)

	// Sealed under the epoch key itself instead of the derived NACK key.
	h, err := wire.ParseNackHeader(pkt)
	if err != nil {
		t.Fatal(err)
	}
	x, err := chacha20poly1305.NewX(k.key[:])
	if err != nil {
		t.Fatal(err)
	}
	hdr := wire.AppendNackHeader(nil, h)
	underEpochKey := x.Seal(hdr, h.Nonce[:], body, hdr[:wire.NackHeaderLen])

	// The body moved under another room's header.
	moved := bytes.Clone(pkt)
	copy(moved[wire.HeaderLen:], otherRoom[:])

	tests := []struct {
		name string
		k    *epochKey
		pkt  []byte
	}{
		{"opened with another key", other, pkt},
		{"sealed under another key", k, mustSealNack(t, other, sealRoom, body)},
		{"sealed under the epoch key", k, underEpochKey},
		{"moved to another room", k, moved},
		{"bare tag", k, pkt[:wire.NackHeaderLen+wire.NonceXLen+wire.TagLen]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n wire.Nack
			if _, err := openNackPacket(tt.k, tt.pkt, &n); !errors.Is(err, errAuth) {
				t.Errorf("openNack = %v, want %v", err, errAuth)
			}
		})
	}
}

func TestNackMalformedBody(t *testing.T) {
	k := newTestEpochKey(t, 1)
	// Sealed correctly, but a body no member would send: no entries.
	body := make([]byte, wire.KeyIDLen, wire.KeyIDLen+17)
	body = binary.BigEndian.AppendUint64(body, 1) // session
	body = binary.BigEndian.AppendUint64(body, 1) // counter
	pkt := mustSealNack(t, k, sealRoom, append(body, 0))
	var n wire.Nack
	if _, err := openNackPacket(k, pkt, &n); !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("openNack(no entries) = %v, want %v", err, wire.ErrInvalid)
	}
}

func sealRecords(id *Identity) []wire.Record {
	return []wire.Record{
		{Kind: wire.KindJoin, KeyID: KeyID(id.Pub), Nick: "ann"},
		{Kind: wire.KindMessage, KeyID: KeyID(id.Pub), Nick: "ann", Text: "hello, room"},
	}
}

func mustSignBatch(t testing.TB, id *Identity, room [wire.RoomIDLen]byte, first uint64, recs []wire.Record) []byte {
	t.Helper()
	b, err := signBatch(nil, id, batchOpts(room), first, recs)
	if err != nil {
		t.Fatalf("signBatch = %v, want nil", err)
	}
	return b
}

func TestSignVerifyBatch(t *testing.T) {
	host := newTestIdentity(t)
	tests := []struct {
		name  string
		first uint64
		recs  []wire.Record
	}{
		{"records", 1, sealRecords(host)},
		{"one", 1 << 40, sealRecords(host)[1:]},
		{"long text", 3, []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(host.Pub), Nick: "ann", Text: strings.Repeat("x", wire.MaxText)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, 0, wire.MaxBatch)
			b, err := signBatch(buf, host, batchOpts(sealRoom), tt.first, tt.recs)
			if err != nil {
				t.Fatalf("signBatch = %v, want nil", err)
			}
			body, _ := wire.AppendBatchBody(nil, tt.first, tt.recs)
			if want := len(body) + wire.SigLen; len(b) != want {
				t.Errorf("signed batch of %d bytes, want %d", len(b), want)
			}
			bt, err := verifyBatch(host.Pub, batchOpts(sealRoom), b, make([]wire.Record, 0, 1), nil)
			if err != nil {
				t.Fatalf("verifyBatch(signBatch(…)) = %v, want nil", err)
			}
			if bt.First != tt.first || !slices.Equal(bt.Records, tt.recs) {
				t.Errorf("verifyBatch = first %d, %d records, want %d, %d records", bt.First, len(bt.Records), tt.first, len(tt.recs))
			}
		})
	}
}

func TestSignBatchInvalid(t *testing.T) {
	host := newTestIdentity(t)
	for name, recs := range map[string][]wire.Record{
		"no records":    nil,
		"text over max": {{Kind: wire.KindMessage, Text: strings.Repeat("x", wire.MaxText+1)}},
		"kind zero":     {{}},
	} {
		if b, err := signBatch(nil, host, batchOpts(sealRoom), 1, recs); err == nil {
			t.Errorf("signBatch(%s) = %.20x…, nil, want an error", name, b)
		}
	}
}

func TestVerifyBatchRejectsMemberForgery(t *testing.T) {
	host, member := newTestIdentity(t), newTestIdentity(t)
	// A member holds the epoch key, so it can seal shards, but it signs
	// batches with its own key while the receiver checks the host's.
	forged := mustSignBatch(t, member, sealRoom, 1, sealRecords(host))
	if _, err := verifyBatch(host.Pub, batchOpts(sealRoom), forged, nil, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("verifyBatch(signed by a member) = %v, want %v", err, ErrBadSignature)
	}
	// And the host's signature does not carry over to another batch.
	b := mustSignBatch(t, host, sealRoom, 1, sealRecords(host))
	other := mustSignBatch(t, host, sealRoom, 2, sealRecords(host))
	spliced := append(bytes.Clone(other[:len(other)-wire.SigLen]), b[len(b)-wire.SigLen:]...)
	if _, err := verifyBatch(host.Pub, batchOpts(sealRoom), spliced, nil, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("verifyBatch(signature of another batch) = %v, want %v", err, ErrBadSignature)
	}
}

func TestVerifyBatchRejectsOtherRoom(t *testing.T) {
	host := newTestIdentity(t)
	b := mustSignBatch(t, host, sealRoom, 1, sealRecords(host))
	if _, err := verifyBatch(host.Pub, batchOpts(otherRoom), b, nil, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("verifyBatch(room A's batch in room B) = %v, want %v", err, ErrBadSignature)
	}
	if _, err := verifyBatch(host.Pub, &ed25519.Options{}, b, nil, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("verifyBatch(plain Ed25519, no context) = %v, want %v", err, ErrBadSignature)
	}
	if _, err := verifyBatch(host.Pub, batchOpts(sealRoom), b, nil, nil); err != nil {
		t.Errorf("verifyBatch(in its room) = %v, want nil", err)
	}
}

func TestVerifyBatchRejectsEveryFlip(t *testing.T) {
	host := newTestIdentity(t)
	b := mustSignBatch(t, host, sealRoom, 7, sealRecords(host))
	opts := batchOpts(sealRoom)
	recs := make([]wire.Record, 0, 4)
	for i := range b {
		for _, x := range []byte{0x01, 0xff} {
			m := bytes.Clone(b)
			m[i] ^= x
			if bt, err := verifyBatch(host.Pub, opts, m, recs, nil); err == nil {
				t.Errorf("verifyBatch(byte %d ^ %#x) = nil, want an error", i, x)
			} else {
				recs = bt.Records[:0]
			}
		}
	}
	// Cut or extended, it fails too.
	for _, m := range [][]byte{b[:len(b)-1], append(bytes.Clone(b), 0), b[:wire.SigLen]} {
		if _, err := verifyBatch(host.Pub, opts, m, nil, nil); err == nil {
			t.Errorf("verifyBatch(%d of %d bytes) = nil, want an error", len(m), len(b))
		}
	}
}

func benchShardInfo() wire.ShardInfo { return wire.ShardInfo{Block: 1, Index: 0, K: 1, Sent: 1} }

func BenchmarkSealShard(b *testing.B) {
	k := newTestEpochKey(b, 1)
	shard := testShard(300)
	buf := make([]byte, 0, wire.MaxPacket)
	var nb nonceBuf
	b.SetBytes(int64(len(shard)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sealShard(buf, &nb, k, sealTag, benchShardInfo(), shard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenSealed(b *testing.B) {
	k := newTestEpochKey(b, 1)
	shard := testShard(300)
	pkt := mustSealShard(b, k, benchShardInfo(), shard)
	h, err := parseSealed(pkt)
	if err != nil {
		b.Fatal(err)
	}
	scratch := make([]byte, 0, wire.MaxPacket)
	var nb nonceBuf
	b.SetBytes(int64(len(shard)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := openSealed(scratch, &nb, k, &h, pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRecords(id *Identity) []wire.Record {
	return []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(id.Pub), Nick: "ann", Text: strings.Repeat("m", 200)}}
}

func BenchmarkSignBatch(b *testing.B) {
	host := newTestIdentity(b)
	recs := benchRecords(host)
	opts := batchOpts(sealRoom)
	buf := make([]byte, 0, wire.MaxBatch)
	b.SetBytes(200)
	b.ReportAllocs()
	var first uint64
	for b.Loop() {
		first++
		if _, err := signBatch(buf, host, opts, first, recs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyBatch(b *testing.B) {
	host := newTestIdentity(b)
	opts := batchOpts(sealRoom)
	batch := mustSignBatch(b, host, sealRoom, 1, benchRecords(host))
	recs := make([]wire.Record, 0, 4)
	b.SetBytes(200)
	b.ReportAllocs()
	for b.Loop() {
		bt, err := verifyBatch(host.Pub, opts, batch, recs, nil)
		if err != nil {
			b.Fatal(err)
		}
		recs = bt.Records
	}
}

// TestNackVector pins the NACK test vector of docs/PROTOCOL.md (appendix):
// sealNack's sealing with the fixed nonce 00 01 … 17 in place of a random
// one.
func TestNackVector(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = 0x42
	}
	k, err := newEpochKey(Epoch(1, 2), key)
	if err != nil {
		t.Fatal(err)
	}
	body, err := wire.AppendNackBody(nil, &wire.Nack{
		KeyID:   [wire.KeyIDLen]byte{0x56, 0x47, 0x5a, 0xa7, 0x54, 0x63, 0x47, 0x4c},
		Session: 0x0123456789abcdef,
		Counter: 1,
		Entries: []wire.NackEntry{{Block: 1, Missing: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := wire.NackHeader{Room: [wire.RoomIDLen]byte{0xf8, 0x15, 0xee, 0xce, 0xf1, 0x4f, 0x5e, 0xc0}, Epoch: k.wireEpoch()}
	for i := range h.Nonce {
		h.Nonce[i] = byte(i)
	}
	b := wire.AppendNackHeader(nil, h)
	pkt := k.nack.Seal(b, h.Nonce[:], body, b[:wire.NackHeaderLen])
	const want = "4d440505f815eecef14f5ec000000002" +
		"000102030405060708090a0b0c0d0e0f1011121314151617" +
		"2a545fd86f759b26557667c73d2268d0ecf551337144ba416bcf4437b5e04f3f95e2" + // sealed
		"cc51b53b360204413474357acefacc9e" // tag
	if got := hex.EncodeToString(pkt); got != want {
		t.Errorf("NACK vector (%d bytes) =\n%s\nbody %x\nwant\n%s", len(pkt), got, body, want)
	}
	var n wire.Nack
	if _, err := openNackPacket(k, pkt, &n); err != nil {
		t.Errorf("openNack(vector) = %v, want nil", err)
	}
}

// vectorIdentity is the identity of the test vectors: seed 00 01 … 1f.
func vectorIdentity(t *testing.T) *Identity {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	id, err := NewIdentity(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestBatchVector pins the batch and shard test vectors of
// docs/PROTOCOL.md (appendix): a batch of one line signed by the identity
// of seed 00 01 … 1f, its block (the batch's body behind its length, then the block's
// signature and its kind), its data and first parity shard and a
// heartbeat sealed under the epoch key 32 × 42.
func TestBatchVector(t *testing.T) {
	id := vectorIdentity(t)
	room := RoomID(id.Pub, "general")
	batch, err := signBatch(nil, id, batchOpts(room), 1, []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(id.Pub), Nick: "alice", Text: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	const wantBatch = "0000000000000001 01 01 56475aa75463474c 05616c696365 11 00 6869"
	sig := hex.EncodeToString(batch[len(batch)-wire.SigLen:])
	if got := hex.EncodeToString(batch[:len(batch)-wire.SigLen]); got != strings.ReplaceAll(wantBatch, " ", "") {
		t.Errorf("batch body = %s, want %s", got, wantBatch)
	}
	const wantSig = "" +
		"17aeecd2a929444e4f5d94d7a68fd807ccc02ba28a016bf41d8123ba4ec3e320" +
		"f35cd19ab6711b08ea56d7830b424e050a85c0808eb7f205b4679ca995c31809"
	if sig != wantSig {
		t.Errorf("batch signature = %s, want %s", sig, wantSig)
	}
	block, err := signBlock(wire.AppendBlockBatch(nil, batch[:len(batch)-wire.SigLen]), id, blockOpts(room))
	if err != nil {
		t.Fatal(err)
	}
	// In the block the record has no sender index: one sender.
	const wantBlock = "001b 0000000000000001 01 01 56475aa75463474c 05616c696365 11 6869"
	if got := hex.EncodeToString(block[:len(block)-wire.BlockSigLen]); got != strings.ReplaceAll(wantBlock, " ", "") {
		t.Errorf("block batches = %s, want %s", got, wantBlock)
	}
	const wantBlockSig = "" +
		"d10d15759626e40d2a4c048dd4ae94cf3c234d315915c32168cb32b443744567" +
		"bcfc75da809bb90eaf23f6395d0ae32c4ae0d0e6eefa2214707de04aaba0330b"
	if got := hex.EncodeToString(block[len(block)-wire.BlockSigLen : len(block)-1]); got != wantBlockSig || block[len(block)-1] != wire.AuthSig {
		t.Errorf("block signature = %s, kind %d, want %s, kind %d", got, block[len(block)-1], wantBlockSig, wire.AuthSig)
	}
	shards, k, err := encodeBlockTo(nil, block)
	if err != nil || k != 1 || len(shards) != 5 || len(shards[0]) != len(block)+1 {
		t.Fatalf("encodeBlockTo = %d shards of k %d, %v; want 5 of %d bytes, k 1", len(shards), k, err, len(block)+1)
	}
	var key [32]byte
	for i := range key {
		key[i] = 0x42
	}
	ek, err := newEpochKey(Epoch(1, 2), key)
	if err != nil {
		t.Fatal(err)
	}
	var nb nonceBuf
	for i, want := range []string{
		"4d440503f815eece02000001000101bb227908872041752f7fed2c702259a5d062938b3c6366032873cf0e3d610bb4713aa447097658dd0c168f43400938ee564827a17f6b034199c7cf2df9593e96b66bc4410d813af7a401da5c55590c4f53b5a3fefaac4e1ead1524d100c257771ea74d89909ee2cfb730939f7e0b43",
		"4d440503f815eece02000001010101bd83b7adcba00e56ae6c80ff186acc238aee16d177db65cdf38d739be803a6f5fe2d5c8a84dd82d146e66e8a7a60c0411c23d1b20526125dbda158e5d9139772338449181a2363aed4f8e8341d015bed464424bc2f2397d3d733bf0da6877a62b0d9ff8a0f25e9d021de7255038bfd",
	} {
		pkt, err := sealShard(nil, &nb, ek, wire.TagOf(room), wire.ShardInfo{Block: 1, Index: uint8(i), K: 1, Sent: 1}, shards[i])
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(pkt); got != want {
			t.Errorf("shard %d (%d bytes) = %s, want %s", i, len(pkt), got, want)
		}
	}
	const wantHeartbeat = "4d440504f815eece" + "02" + "00000003" +
		"7e7ad4e9434713fa47a764fb013dda40" + // sealed
		"ee3b78a9a49db4b5538a36baaa73dd4b" // tag
	pkt, err := sealHeartbeat(nil, &nb, ek, wire.TagOf(room), 3, wire.Heartbeat{Next: 2, LastBlock: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(pkt); got != wantHeartbeat {
		t.Errorf("heartbeat (%d bytes) = %s, want %s", len(pkt), got, wantHeartbeat)
	}
}

// TestAnnounceVector pins the announcement test vector of
// docs/PROTOCOL.md (appendix), signed by the identity of seed 00 01 … 1f.
func TestAnnounceVector(t *testing.T) {
	id := vectorIdentity(t)
	a := wire.Announce{
		Serial:   1<<32 | 1,
		Lifetime: 30,
		Group:    netip.MustParseAddrPort("239.255.78.206:7703"),
		Room:     "general",
		Addrs:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:7702")},
	}
	b, err := SignAnnounce(id, &a)
	if err != nil {
		t.Fatal(err)
	}
	const want = "4d4405010000000100000001" +
		"03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8" +
		"001e04efff4ece1e170767656e6572616c01040a0000011e1600" +
		"26e992cc34a3d7fb99872f410ad95d7ada7ea8bf12627768e03c4e3dc6d8baa6" +
		"ba8283a4bb11e36ed14009688d9eaf7b05eb4ed64fe33d8a55febde8667d110c"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("announcement (%d bytes) = %s, want %s", len(b), got, want)
	}
}
