package rooms

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
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

var sealRoom = [wire.RoomIDLen]byte{'r', 'o', 'o', 'm', 0, 0, 0, 1}

func sealRecords(id *Identity) []wire.Record {
	return []wire.Record{
		{Kind: wire.KindJoin, KeyID: KeyID(id.Pub), Nick: "ann"},
		{Kind: wire.KindMessage, KeyID: KeyID(id.Pub), Nick: "ann", Text: "hello, room"},
	}
}

func mustSeal(t testing.TB, id *Identity, k *epochKey, counter, first uint64, recs []wire.Record) []byte {
	t.Helper()
	pkt, err := sealBatch(nil, id, k, sealRoom, counter, first, recs)
	if err != nil {
		t.Fatalf("sealBatch(counter %d) = %v, want nil", counter, err)
	}
	return pkt
}

func TestSealOpen(t *testing.T) {
	host := newTestIdentity(t)
	k := newTestEpochKey(t, Epoch(3, 1))
	tests := []struct {
		name    string
		counter uint64
		first   uint64
		recs    []wire.Record
	}{
		{"records", 1, 1, sealRecords(host)},
		{"heartbeat", 2, 3, nil},
		{"last counter", ^uint64(0) - 1, 1 << 40, sealRecords(host)[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := mustSeal(t, host, k, tt.counter, tt.first, tt.recs)
			h, sealed, err := wire.ParseDataHeader(pkt)
			if err != nil {
				t.Fatalf("ParseDataHeader = %v, want nil", err)
			}
			if want := (wire.DataHeader{Room: sealRoom, Epoch: k.epoch, Counter: tt.counter}); h != want {
				t.Errorf("header = %+v, want %+v", h, want)
			}
			body, _ := wire.AppendBatchBody(nil, tt.first, tt.recs)
			if want := len(body) + wire.SigLen + wire.TagLen; len(sealed) != want {
				t.Errorf("sealed part = %d bytes, want %d", len(sealed), want)
			}
			if bytes.Contains(pkt, []byte("hello, room")) {
				t.Errorf("sealed packet %q shows the text in the clear", pkt)
			}
			bt, _, err := openBatch(nil, k, host.Pub, pkt, nil)
			if err != nil {
				t.Fatalf("openBatch(sealBatch(…)) = %v, want nil", err)
			}
			if bt.First != tt.first || !slices.Equal(bt.Records, tt.recs) {
				t.Errorf("openBatch = first %d, %+v, want %d, %+v", bt.First, bt.Records, tt.first, tt.recs)
			}
		})
	}
}

func TestSealInvalidBatch(t *testing.T) {
	host := newTestIdentity(t)
	k := newTestEpochKey(t, 1)
	recs := []wire.Record{{Kind: wire.KindMessage, Text: strings.Repeat("x", wire.MaxText+1)}}
	if pkt, err := sealBatch(nil, host, k, sealRoom, 1, 1, recs); err == nil {
		t.Errorf("sealBatch(text over MaxText) = %x, nil, want an error", pkt)
	}
}

func TestOpenRejectsMemberForgery(t *testing.T) {
	host, member := newTestIdentity(t), newTestIdentity(t)
	k := newTestEpochKey(t, 1)

	// A member holds the epoch key, so it can seal, but it signs with its
	// own key while the receiver checks the host's.
	forged := mustSeal(t, member, k, 1, 1, sealRecords(host))
	if _, _, err := openBatch(nil, k, host.Pub, forged, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("openBatch(signed by a member) = %v, want %v", err, ErrBadSignature)
	}

	// Nor can it move the host's signed batch to another header: the
	// signature covers the header too.
	pkt := mustSeal(t, host, k, 1, 1, sealRecords(host))
	_, plain, err := openBatch(nil, k, host.Pub, pkt, nil)
	if err != nil {
		t.Fatalf("openBatch = %v, want nil", err)
	}
	for _, h := range []wire.DataHeader{
		{Room: sealRoom, Epoch: k.epoch, Counter: 2},
		{Room: [wire.RoomIDLen]byte{9}, Epoch: k.epoch, Counter: 1},
	} {
		hdr := wire.AppendDataHeader(nil, h)
		n := nonce(h.Counter)
		moved := k.aead.Seal(bytes.Clone(hdr), n[:], plain[wire.DataHeaderLen:], hdr)
		if _, _, err := openBatch(nil, k, host.Pub, moved, nil); !errors.Is(err, ErrBadSignature) {
			t.Errorf("openBatch(host's batch resealed under %+v) = %v, want %v", h, err, ErrBadSignature)
		}
	}
}

func TestOpenRejectsOutsiders(t *testing.T) {
	host := newTestIdentity(t)
	k := newTestEpochKey(t, 1)
	other := newTestEpochKey(t, 1) // the same epoch number, another key
	pkt := mustSeal(t, host, k, 1, 1, sealRecords(host))

	random := wire.AppendDataHeader(nil, wire.DataHeader{Room: sealRoom, Epoch: k.epoch, Counter: 5})
	random = append(random, make([]byte, 100)...)
	if _, err := rand.Read(random[wire.DataHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		k    *epochKey
		pkt  []byte
	}{
		{"random bytes", k, random},
		{"bare tag", k, random[:wire.DataHeaderLen+wire.TagLen]},
		{"sealed under another key", k, mustSeal(t, host, other, 1, 1, sealRecords(host))},
		{"opened with another key", other, pkt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := openBatch(nil, tt.k, host.Pub, tt.pkt, nil); !errors.Is(err, errAuth) {
				t.Errorf("openBatch = %v, want %v", err, errAuth)
			}
		})
	}
}

func TestOpenRejectsEveryFlip(t *testing.T) {
	host := newTestIdentity(t)
	k := newTestEpochKey(t, 1)
	pkt := mustSeal(t, host, k, 1, 1, sealRecords(host))
	scratch := make([]byte, 0, wire.MaxPacket)
	for i := range pkt {
		for _, x := range []byte{0x01, 0xff} {
			m := bytes.Clone(pkt)
			m[i] ^= x
			if _, _, err := openBatch(scratch, k, host.Pub, m, nil); !errors.Is(err, errAuth) {
				t.Errorf("openBatch(byte %d ^ %#x) = %v, want %v", i, x, err, errAuth)
			}
		}
	}
}

func TestSealCounterExhausted(t *testing.T) {
	host := newTestIdentity(t)
	k := newTestEpochKey(t, 1)
	buf := make([]byte, 0, wire.MaxPacket)
	pkt, err := sealBatch(buf, host, k, sealRoom, ^uint64(0), 1, sealRecords(host))
	if !errors.Is(err, errCounterExhausted) || pkt != nil {
		t.Errorf("sealBatch(counter 2^64-1) = %x, %v, want nil, %v", pkt, err, errCounterExhausted)
	}
	// The counter before it is the last one used, and its nonce is its own.
	last := mustSeal(t, host, k, ^uint64(0)-1, 1, sealRecords(host))
	if got := binary.BigEndian.Uint64(last[wire.DataHeaderLen-8:]); got != ^uint64(0)-1 {
		t.Errorf("counter = %d, want %d", got, ^uint64(0)-1)
	}
	if n0, nl := nonce(0), nonce(^uint64(0)-1); n0 == nl {
		t.Errorf("nonce(0) = nonce(2^64-2) = %x", n0)
	}
}

func TestOpenFailuresLeaveScratchUsable(t *testing.T) {
	host, member := newTestIdentity(t), newTestIdentity(t)
	k := newTestEpochKey(t, 1)
	other := newTestEpochKey(t, 1)
	scratch := make([]byte, 0, wire.MaxPacket)
	recs := make([]wire.Record, 0, 4)

	first := mustSeal(t, host, k, 1, 1, sealRecords(host))
	bt, out, err := openBatch(scratch, k, host.Pub, first, recs)
	if err != nil {
		t.Fatalf("openBatch(first) = %v, want nil", err)
	}
	kept := slices.Clone(bt.Records)
	scratch, recs = out, bt.Records

	flipped := mustSeal(t, host, k, 2, 3, sealRecords(host))
	flipped[len(flipped)-1] ^= 1
	// A batch whose plaintext does not parse: sealed by hand with a count
	// of records that are not there.
	hdr := wire.AppendDataHeader(nil, wire.DataHeader{Room: sealRoom, Epoch: k.epoch, Counter: 4})
	n := nonce(4)
	plain := append(binary.BigEndian.AppendUint64(nil, 3), 9)
	plain = append(plain, make([]byte, wire.SigLen)...)
	malformed := k.aead.Seal(bytes.Clone(hdr), n[:], plain, hdr)

	for _, bad := range [][]byte{
		flipped,
		malformed,
		mustSeal(t, member, k, 5, 3, sealRecords(member)),
		mustSeal(t, host, other, 6, 3, sealRecords(host)),
	} {
		_, out, err := openBatch(scratch, k, host.Pub, bad, recs)
		if err == nil {
			t.Fatalf("openBatch(bad packet) = nil, want an error")
		}
		if out != nil {
			scratch = out
		}
	}
	if !slices.Equal(kept, sealRecords(host)) {
		t.Errorf("records of the first open = %+v after failed opens, want %+v", kept, sealRecords(host))
	}

	want := []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(host.Pub), Nick: "ann", Text: "second"}}
	second := mustSeal(t, host, k, 7, 3, want)
	bt, _, err = openBatch(scratch, k, host.Pub, second, recs)
	if err != nil {
		t.Fatalf("openBatch(second) = %v after failed opens, want nil", err)
	}
	if bt.First != 3 || !slices.Equal(bt.Records, want) {
		t.Errorf("openBatch(second) = first %d, %+v, want 3, %+v", bt.First, bt.Records, want)
	}
}

func benchRecords(id *Identity) []wire.Record {
	return []wire.Record{{Kind: wire.KindMessage, KeyID: KeyID(id.Pub), Nick: "ann", Text: strings.Repeat("m", 200)}}
}

func BenchmarkSealBatch(b *testing.B) {
	host := newTestIdentity(b)
	k := newTestEpochKey(b, 1)
	recs := benchRecords(host)
	buf := make([]byte, 0, wire.MaxPacket)
	b.SetBytes(200)
	b.ReportAllocs()
	var counter uint64
	for b.Loop() {
		counter++
		if _, err := sealBatch(buf, host, k, sealRoom, counter, counter, recs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenBatch(b *testing.B) {
	host := newTestIdentity(b)
	k := newTestEpochKey(b, 1)
	pkt := mustSeal(b, host, k, 1, 1, benchRecords(host))
	scratch := make([]byte, 0, wire.MaxPacket)
	recs := make([]wire.Record, 0, 4)
	b.SetBytes(200)
	b.ReportAllocs()
	for b.Loop() {
		bt, out, err := openBatch(scratch, k, host.Pub, pkt, recs)
		if err != nil {
			b.Fatal(err)
		}
		scratch, recs = out, bt.Records
	}
}
