package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"meshd/rooms/wire"
)

// fakeSig stands in for a signature: the wire format only carries it.
var fakeSig = bytes.Repeat([]byte{0xa5}, wire.SigLen)

func hostKey() [32]byte {
	var k [32]byte
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func addrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), uint16(7000+i))
	}
	return out
}

func sampleAnnounce() wire.Announce {
	return wire.Announce{
		Serial:   0x0102030405060708,
		HostKey:  hostKey(),
		Lifetime: 300,
		Group:    ap("239.255.78.9:4243"),
		Room:     "lobby",
		Addrs:    []netip.AddrPort{ap("10.0.0.1:4244"), ap("[fd00::1]:4244")},
	}
}

// encodeAnnounce returns the body and the whole packet (body and fakeSig).
func encodeAnnounce(t testing.TB, a *wire.Announce) (body, pkt []byte) {
	t.Helper()
	body, err := wire.AppendAnnounceBody(nil, a)
	if err != nil {
		t.Fatalf("AppendAnnounceBody(%+v) = %v, want nil", a, err)
	}
	return body, append(slices.Clip(body), fakeSig...)
}

// reencodeAnnounce encodes a decoded announcement again, signature and all.
func reencodeAnnounce(a *wire.Announce) ([]byte, error) {
	b, err := wire.AppendAnnounceBody(nil, a)
	return append(b, a.Sig[:]...), err
}

func reencodeBatch(bt *wire.Batch) ([]byte, error) {
	b, err := wire.AppendBatchBody(nil, bt.First, bt.Records)
	return append(b, bt.Sig[:]...), err
}

// reencodeFrame encodes f and strips the length prefix, giving what
// ParseFrame decodes.
func reencodeFrame(f wire.Frame) ([]byte, error) {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		return nil, err
	}
	if got := binary.BigEndian.Uint32(b); int(got) != len(b)-4 {
		return nil, errors.New("length prefix does not match the body")
	}
	return b[4:], nil
}

// announceBytes builds an announcement by hand from the layout in the
// package documentation, independently of the encoder, so that tests can
// make packets the encoder refuses to.
type rawAnnounce struct {
	room  []byte
	addrs [][]byte // each an encoded addr
	group []byte
}

func v4addr(a [4]byte, port uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte{4}, a[:]...), port)
}

func v6addr(a [16]byte, port uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte{6}, a[:]...), port)
}

func (r rawAnnounce) bytes() []byte {
	b := []byte{'M', 'D', wire.Version, wire.TypeAnnounce}
	b = binary.BigEndian.AppendUint64(b, 7)
	k := hostKey()
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint16(b, 60)
	group := r.group
	if group == nil {
		group = v4addr([4]byte{239, 1, 2, 3}, 9)
	}
	b = append(b, group...)
	b = append(b, byte(len(r.room)))
	b = append(b, r.room...)
	b = append(b, byte(len(r.addrs)))
	for _, a := range r.addrs {
		b = append(b, a...)
	}
	return append(b, fakeSig...)
}

func rawAddrs(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = v4addr([4]byte{10, 0, 0, byte(i + 1)}, 1)
	}
	return out
}

func TestAnnounceRoundTrip(t *testing.T) {
	v6 := sampleAnnounce()
	v6.Group = ap("[ff15::78]:4243")
	maxed := sampleAnnounce()
	maxed.Serial = ^uint64(0)
	maxed.Lifetime = ^uint16(0)
	maxed.Room = strings.Repeat("r", wire.MaxRoomName)
	maxed.Addrs = addrs(wire.MaxAddrs)
	one := sampleAnnounce()
	one.Serial = 0
	one.Lifetime = 0
	one.Room = "x"
	one.Addrs = addrs(1)
	tests := []struct {
		name string
		a    wire.Announce
	}{
		{"sample", sampleAnnounce()},
		{"v6 group", v6},
		{"maxima", maxed},
		{"minima", one},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, pkt := encodeAnnounce(t, &tt.a)
			got, err := wire.ParseAnnounce(pkt)
			if err != nil {
				t.Fatalf("ParseAnnounce(%x) = %v, want nil", pkt, err)
			}
			want := tt.a
			if got.Serial != want.Serial || got.HostKey != want.HostKey || got.Lifetime != want.Lifetime ||
				got.Group != want.Group || got.Room != want.Room || !slices.Equal(got.Addrs, want.Addrs) {
				t.Errorf("ParseAnnounce(AppendAnnounceBody(a)) = %+v, want %+v", got, want)
			}
			if !bytes.Equal(got.Sig[:], fakeSig) {
				t.Errorf("Sig = %x, want %x", got.Sig, fakeSig)
			}
			if !bytes.Equal(got.Signed, body) {
				t.Errorf("Signed = %x, want the body %x", got.Signed, body)
			}
			re, err := reencodeAnnounce(&got)
			if err != nil || !bytes.Equal(re, pkt) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, pkt)
			}
		})
	}
}

func TestAnnounceLayout(t *testing.T) {
	a := wire.Announce{
		Serial:   7,
		HostKey:  hostKey(),
		Lifetime: 60,
		Group:    ap("239.1.2.3:9"),
		Room:     "ab",
		Addrs:    []netip.AddrPort{ap("10.0.0.1:1"), ap("[fd00::2]:3")},
	}
	_, got := encodeAnnounce(t, &a)
	want := rawAnnounce{
		room:  []byte("ab"),
		addrs: [][]byte{v4addr([4]byte{10, 0, 0, 1}, 1), v6addr(netip.MustParseAddr("fd00::2").As16(), 3)},
	}.bytes()
	if !bytes.Equal(got, want) {
		t.Errorf("announcement = %x, want %x", got, want)
	}
}

func TestAnnounceMappedAddressEncodesAsV4(t *testing.T) {
	a := sampleAnnounce()
	a.Group = ap("[::ffff:239.1.2.3]:9")
	a.Addrs = []netip.AddrPort{ap("[::ffff:10.0.0.1]:1")}
	_, pkt := encodeAnnounce(t, &a)
	got, err := wire.ParseAnnounce(pkt)
	if err != nil {
		t.Fatalf("ParseAnnounce = %v, want nil", err)
	}
	if want := ap("239.1.2.3:9"); got.Group != want {
		t.Errorf("Group = %v, want %v", got.Group, want)
	}
	if want := ap("10.0.0.1:1"); got.Addrs[0] != want {
		t.Errorf("Addrs[0] = %v, want %v", got.Addrs[0], want)
	}
}

func TestAnnounceEncodeBounds(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*wire.Announce)
		wantErr error // nil: accepted
	}{
		{"room at max", func(a *wire.Announce) { a.Room = strings.Repeat("r", wire.MaxRoomName) }, nil},
		{"room over max", func(a *wire.Announce) { a.Room = strings.Repeat("r", wire.MaxRoomName+1) }, wire.ErrTooLong},
		{"room empty", func(a *wire.Announce) { a.Room = "" }, wire.ErrTooLong},
		{"addrs at max", func(a *wire.Announce) { a.Addrs = addrs(wire.MaxAddrs) }, nil},
		{"addrs over max", func(a *wire.Announce) { a.Addrs = addrs(wire.MaxAddrs + 1) }, wire.ErrInvalid},
		{"no addrs", func(a *wire.Announce) { a.Addrs = nil }, wire.ErrInvalid},
		{"invalid group", func(a *wire.Announce) { a.Group = netip.AddrPort{} }, wire.ErrInvalid},
		{"invalid addr", func(a *wire.Announce) { a.Addrs[1] = netip.AddrPort{} }, wire.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sampleAnnounce()
			tt.modify(&a)
			prefix := []byte("keep")
			b, err := wire.AppendAnnounceBody(prefix, &a)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("AppendAnnounceBody = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !bytes.Equal(b, prefix) {
				t.Errorf("AppendAnnounceBody on error = %q, want %q unchanged", b, prefix)
			}
		})
	}
}

func TestParseAnnounceBounds(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.0.0.1").As16()
	tests := []struct {
		name    string
		raw     rawAnnounce
		wantErr error // nil: accepted
	}{
		{"room at max", rawAnnounce{room: bytes.Repeat([]byte("r"), wire.MaxRoomName), addrs: rawAddrs(1)}, nil},
		{"room over max", rawAnnounce{room: bytes.Repeat([]byte("r"), wire.MaxRoomName+1), addrs: rawAddrs(1)}, wire.ErrTooLong},
		{"room empty", rawAnnounce{addrs: rawAddrs(1)}, wire.ErrInvalid},
		{"addrs at max", rawAnnounce{room: []byte("r"), addrs: rawAddrs(wire.MaxAddrs)}, nil},
		{"addrs over max", rawAnnounce{room: []byte("r"), addrs: rawAddrs(wire.MaxAddrs + 1)}, wire.ErrInvalid},
		{"no addrs", rawAnnounce{room: []byte("r")}, wire.ErrInvalid},
		{"v6 addr", rawAnnounce{room: []byte("r"), addrs: [][]byte{v6addr([16]byte{0xfd, 15: 1}, 1)}}, nil},
		{"v4-in-v6 addr", rawAnnounce{room: []byte("r"), addrs: [][]byte{v6addr(mapped, 1)}}, wire.ErrInvalid},
		{"v4-in-v6 group", rawAnnounce{room: []byte("r"), addrs: rawAddrs(1), group: v6addr(mapped, 1)}, wire.ErrInvalid},
		{"family 5", rawAnnounce{room: []byte("r"), addrs: [][]byte{append([]byte{5}, v4addr([4]byte{10, 0, 0, 1}, 1)[1:]...)}}, wire.ErrInvalid},
		{"family 0 group", rawAnnounce{room: []byte("r"), addrs: rawAddrs(1), group: []byte{0, 1, 2, 3, 4, 5, 6}}, wire.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := tt.raw.bytes()
			a, err := wire.ParseAnnounce(pkt)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseAnnounce(%x) = %v, want %v", pkt, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			re, err := reencodeAnnounce(&a)
			if err != nil || !bytes.Equal(re, pkt) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, pkt)
			}
		})
	}
}

func TestPacketTypeErrors(t *testing.T) {
	tests := []struct {
		in      string
		want    byte
		wantErr error
	}{
		{"", 0, wire.ErrShort},
		{"MD\x01", 0, wire.ErrShort},
		{"XD\x01\x01", 0, wire.ErrMagic},
		{"MX\x01\x01", 0, wire.ErrMagic},
		{"MD\x00\x01", 0, wire.ErrVersion},
		{"MD\x02\x01", 0, wire.ErrVersion},
		{"MD\x01\x01", wire.TypeAnnounce, nil},
		{"MD\x01\x02", wire.TypeData, nil},
		{"MD\x01\x63 and more", 0x63, nil},
	}
	for _, tt := range tests {
		got, err := wire.PacketType([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("PacketType(%q) = %d, %v, want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// withHeader returns pkt with its four header bytes replaced.
func withHeader(pkt []byte, hdr string) []byte {
	b := bytes.Clone(pkt)
	copy(b, hdr)
	return b
}

func TestParseHeaderErrors(t *testing.T) {
	_, ann := encodeAnnounce(t, ptr(sampleAnnounce()))
	data := sampleDataPacket()
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"announce magic", withHeader(ann, "md\x01\x01"), wire.ErrMagic},
		{"announce version", withHeader(ann, "MD\x02\x01"), wire.ErrVersion},
		{"announce type", withHeader(ann, "MD\x01\x02"), wire.ErrType},
		{"announce unknown type", withHeader(ann, "MD\x01\x09"), wire.ErrType},
		{"data magic", withHeader(data, "DM\x01\x02"), wire.ErrMagic},
		{"data version", withHeader(data, "MD\xff\x02"), wire.ErrVersion},
		{"data type", withHeader(data, "MD\x01\x01"), wire.ErrType},
		{"data unknown type", withHeader(data, "MD\x01\x00"), wire.ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if strings.HasPrefix(tt.name, "announce") {
				_, err = wire.ParseAnnounce(tt.in)
			} else {
				_, _, err = wire.ParseDataHeader(tt.in)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("parse(%x) = %v, want %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// mutations calls f with every truncation of b, b with a byte appended and
// b with each byte flipped by each of a few masks.
func mutations(b []byte, f func(name string, m []byte)) {
	for n := range len(b) {
		f("truncated", b[:n:n])
	}
	f("trailing", append(bytes.Clone(b), 0))
	for i := range b {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			m := bytes.Clone(b)
			m[i] ^= x
			f("flipped", m)
		}
	}
}

func TestAnnounceMalformed(t *testing.T) {
	_, pkt := encodeAnnounce(t, ptr(sampleAnnounce()))
	for n := range len(pkt) {
		if _, err := wire.ParseAnnounce(pkt[:n:n]); err == nil {
			t.Errorf("ParseAnnounce(first %d of %d bytes) = nil, want an error", n, len(pkt))
		}
	}
	if _, err := wire.ParseAnnounce(append(bytes.Clone(pkt), 0)); !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("ParseAnnounce(packet and a byte) = %v, want %v", err, wire.ErrTrailing)
	}
	// Whatever a mutation does, a packet that parses encodes back to itself.
	mutations(pkt, func(name string, m []byte) {
		a, err := wire.ParseAnnounce(m)
		if err != nil {
			return
		}
		if re, err := reencodeAnnounce(&a); err != nil || !bytes.Equal(re, m) {
			t.Errorf("%s: re-encoding %x = %x, %v, want the same bytes", name, m, re, err)
		}
	})
}

func sampleDataPacket() []byte {
	h := wire.DataHeader{Room: [wire.RoomIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Epoch: 1<<32 | 2, Counter: 99}
	return append(wire.AppendDataHeader(nil, h), bytes.Repeat([]byte{0xee}, 40)...)
}

func TestDataHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		h    wire.DataHeader
		rest int
	}{
		{wire.DataHeader{}, wire.TagLen},
		{wire.DataHeader{Room: [wire.RoomIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Epoch: 1<<32 | 2, Counter: 99}, 100},
		{wire.DataHeader{Room: [wire.RoomIDLen]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Epoch: ^uint64(0), Counter: ^uint64(0)}, wire.MaxPacket - wire.DataHeaderLen},
	}
	for _, tt := range tests {
		rest := bytes.Repeat([]byte{0x5a}, tt.rest)
		hdr := wire.AppendDataHeader(nil, tt.h)
		if len(hdr) != wire.DataHeaderLen {
			t.Errorf("len(AppendDataHeader(%+v)) = %d, want %d", tt.h, len(hdr), wire.DataHeaderLen)
		}
		pkt := append(hdr, rest...)
		got, sealed, err := wire.ParseDataHeader(pkt)
		if err != nil || got != tt.h || !bytes.Equal(sealed, rest) {
			t.Errorf("ParseDataHeader(%x) = %+v, %x, %v, want %+v, %x, nil", pkt, got, sealed, err, tt.h, rest)
		}
	}
}

func TestDataHeaderLayout(t *testing.T) {
	h := wire.DataHeader{Room: [wire.RoomIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Epoch: 0x1112131415161718, Counter: 0x2122232425262728}
	want := []byte{'M', 'D', 1, 2, 1, 2, 3, 4, 5, 6, 7, 8,
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28}
	if got := wire.AppendDataHeader(nil, h); !bytes.Equal(got, want) {
		t.Errorf("AppendDataHeader(%+v) = %x, want %x", h, got, want)
	}
}

func TestDataHeaderShort(t *testing.T) {
	pkt := sampleDataPacket()[:wire.DataHeaderLen+wire.TagLen]
	for n := range len(pkt) {
		if _, _, err := wire.ParseDataHeader(pkt[:n]); err == nil {
			t.Errorf("ParseDataHeader(first %d bytes) = nil, want an error", n)
		}
	}
	if _, _, err := wire.ParseDataHeader(pkt); err != nil {
		t.Errorf("ParseDataHeader(%d bytes) = %v, want nil", len(pkt), err)
	}
}

func sampleRecords() []wire.Record {
	return []wire.Record{
		{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Nick: "ann", Text: "hello, world"},
		{Kind: wire.KindJoin, KeyID: [wire.KeyIDLen]byte{9}, Nick: "bob"},
		{Kind: wire.KindPart, KeyID: [wire.KeyIDLen]byte{9}, Nick: "bob"},
	}
}

func encodeBatch(t testing.TB, first uint64, recs []wire.Record) (body, pkt []byte) {
	t.Helper()
	body, err := wire.AppendBatchBody(nil, first, recs)
	if err != nil {
		t.Fatalf("AppendBatchBody(%d, %d records) = %v, want nil", first, len(recs), err)
	}
	return body, append(slices.Clip(body), fakeSig...)
}

func manyRecords(n int) []wire.Record {
	recs := make([]wire.Record, n)
	for i := range recs {
		recs[i] = wire.Record{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{byte(i)}, Nick: "n", Text: "t"}
	}
	return recs
}

func TestBatchRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		first uint64
		recs  []wire.Record
	}{
		{"heartbeat", 1, nil},
		{"heartbeat at max", ^uint64(0), nil},
		{"sample", 42, sampleRecords()},
		{"maxima", 1, []wire.Record{{Kind: 0xff, Nick: strings.Repeat("n", wire.MaxNick), Text: strings.Repeat("t", wire.MaxText)}}},
		{"max records", ^uint64(0) - wire.MaxRecords, manyRecords(wire.MaxRecords)},
		{"unicode", 7, []wire.Record{{Kind: wire.KindMessage, Nick: "zoë", Text: "ciao 👋"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, pkt := encodeBatch(t, tt.first, tt.recs)
			scratch := make([]wire.Record, 0, 1)
			got, err := wire.ParseBatch(pkt, scratch)
			if err != nil {
				t.Fatalf("ParseBatch(%x) = %v, want nil", pkt, err)
			}
			if got.First != tt.first || !slices.Equal(got.Records, tt.recs) {
				t.Errorf("ParseBatch = first %d, %+v, want %d, %+v", got.First, got.Records, tt.first, tt.recs)
			}
			if !bytes.Equal(got.Sig[:], fakeSig) {
				t.Errorf("Sig = %x, want %x", got.Sig, fakeSig)
			}
			if !bytes.Equal(got.Signed, body) {
				t.Errorf("Signed = %x, want the body %x", got.Signed, body)
			}
			re, err := reencodeBatch(&got)
			if err != nil || !bytes.Equal(re, pkt) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, pkt)
			}
		})
	}
}

func TestBatchLayout(t *testing.T) {
	recs := []wire.Record{{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Nick: "a", Text: "hi"}}
	got, err := wire.AppendBatchBody([]byte("x"), 0x0102030405060708, recs)
	want := []byte{'x', 1, 2, 3, 4, 5, 6, 7, 8, 1, wire.KindMessage, 1, 2, 3, 4, 5, 6, 7, 8, 1, 'a', 0, 2, 'h', 'i'}
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("AppendBatchBody = %x, %v, want %x, nil", got, err, want)
	}
}

func TestParseBatchReusesRecords(t *testing.T) {
	_, pkt := encodeBatch(t, 5, sampleRecords())
	recs := make([]wire.Record, 0, 8)
	recs = append(recs, wire.Record{Kind: 9, Nick: "stale"})
	bt, err := wire.ParseBatch(pkt, recs)
	if err != nil {
		t.Fatalf("ParseBatch = %v, want nil", err)
	}
	if len(bt.Records) != 3 || &bt.Records[0] != &recs[:1][0] {
		t.Errorf("ParseBatch did not decode into recs[:0]: %d records", len(bt.Records))
	}
}

func TestBatchEncodeBounds(t *testing.T) {
	tests := []struct {
		name    string
		first   uint64
		recs    []wire.Record
		wantErr error // nil: accepted
	}{
		{"records at max", 1, manyRecords(wire.MaxRecords), nil},
		{"records over max", 1, manyRecords(wire.MaxRecords + 1), wire.ErrTooLong},
		{"nick at max", 1, []wire.Record{{Kind: 1, Nick: strings.Repeat("n", wire.MaxNick)}}, nil},
		{"nick over max", 1, []wire.Record{{Kind: 1, Nick: strings.Repeat("n", wire.MaxNick+1)}}, wire.ErrInvalid},
		{"text at max", 1, []wire.Record{{Kind: 1, Text: strings.Repeat("t", wire.MaxText)}}, nil},
		{"text over max", 1, []wire.Record{{Kind: 1, Text: strings.Repeat("t", wire.MaxText+1)}}, wire.ErrInvalid},
		{"kind zero", 1, []wire.Record{{Kind: 1}, {Kind: 0}}, wire.ErrInvalid},
		{"first zero", 0, nil, wire.ErrInvalid},
		{"last sequence", ^uint64(0) - 1, manyRecords(1), nil},
		{"sequence wraps", ^uint64(0), manyRecords(1), wire.ErrInvalid},
		{"heartbeat at max", ^uint64(0), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := wire.AppendBatchBody(prefix, tt.first, tt.recs)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("AppendBatchBody(%d, …) = %v, want %v", tt.first, err, tt.wantErr)
			}
			if err != nil && !bytes.Equal(b, prefix) {
				t.Errorf("AppendBatchBody on error = %q, want %q unchanged", b, prefix)
			}
		})
	}
}

// rawRecord encodes a record by hand, with lengths the encoder refuses.
func rawRecord(kind byte, nick, text int) []byte {
	b := append([]byte{kind}, make([]byte, wire.KeyIDLen)...)
	b = append(b, byte(nick))
	b = append(b, bytes.Repeat([]byte("n"), nick)...)
	b = binary.BigEndian.AppendUint16(b, uint16(text))
	return append(b, bytes.Repeat([]byte("t"), text)...)
}

func rawBatch(first uint64, recs ...[]byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, first)
	b = append(b, byte(len(recs)))
	for _, r := range recs {
		b = append(b, r...)
	}
	return append(b, fakeSig...)
}

func TestParseBatchBounds(t *testing.T) {
	max := make([][]byte, wire.MaxRecords)
	for i := range max {
		max[i] = rawRecord(1, 1, 1)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: accepted
	}{
		{"records at max", rawBatch(1, max...), nil},
		{"nick at max", rawBatch(1, rawRecord(1, wire.MaxNick, 0)), nil},
		{"nick over max", rawBatch(1, rawRecord(1, wire.MaxNick+1, 0)), wire.ErrTooLong},
		{"text at max", rawBatch(1, rawRecord(1, 0, wire.MaxText)), nil},
		{"text over max", rawBatch(1, rawRecord(1, 0, wire.MaxText+1)), wire.ErrTooLong},
		{"kind zero", rawBatch(1, rawRecord(0, 1, 1)), wire.ErrInvalid},
		{"first zero", rawBatch(0, rawRecord(1, 1, 1)), wire.ErrInvalid},
		{"heartbeat first zero", rawBatch(0), wire.ErrInvalid},
		{"sequence wraps", rawBatch(^uint64(0), rawRecord(1, 1, 1)), wire.ErrInvalid},
		{"count over records", append(rawBatch(1, rawRecord(1, 1, 1))[:8], append([]byte{2}, rawBatch(1, rawRecord(1, 1, 1))[9:]...)...), wire.ErrShort},
		{"signature only", fakeSig, wire.ErrShort},
		{"short of a signature", fakeSig[1:], wire.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bt, err := wire.ParseBatch(tt.in, nil)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseBatch(%x) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			re, err := reencodeBatch(&bt)
			if err != nil || !bytes.Equal(re, tt.in) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, tt.in)
			}
		})
	}
}

func TestBatchMalformed(t *testing.T) {
	for _, recs := range [][]wire.Record{nil, sampleRecords()} {
		_, pkt := encodeBatch(t, 3, recs)
		for n := range len(pkt) {
			if _, err := wire.ParseBatch(pkt[:n:n], nil); err == nil {
				t.Errorf("ParseBatch(first %d of %d bytes) = nil, want an error", n, len(pkt))
			}
		}
		if _, err := wire.ParseBatch(append(bytes.Clone(pkt), 0), nil); !errors.Is(err, wire.ErrTrailing) {
			t.Errorf("ParseBatch(batch and a byte) = %v, want %v", err, wire.ErrTrailing)
		}
		mutations(pkt, func(name string, m []byte) {
			bt, err := wire.ParseBatch(m, nil)
			if err != nil {
				return
			}
			if re, err := reencodeBatch(&bt); err != nil || !bytes.Equal(re, m) {
				t.Errorf("%s: re-encoding %x = %x, %v, want the same bytes", name, m, re, err)
			}
		})
	}
}

func members(n int) []wire.MemberInfo {
	out := make([]wire.MemberInfo, n)
	for i := range out {
		out[i] = wire.MemberInfo{KeyID: [wire.KeyIDLen]byte{byte(i >> 8), byte(i)}, Nick: strings.Repeat("m", wire.MaxNick)}
	}
	return out
}

func sampleWelcome() *wire.Welcome {
	return &wire.Welcome{
		Room:    [wire.RoomIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Epoch:   1<<32 | 1,
		Key:     [32]byte{31: 0x77},
		Next:    12,
		Group:   ap("239.255.78.9:4243"),
		Members: []wire.MemberInfo{{KeyID: [wire.KeyIDLen]byte{1}, Nick: "ann"}, {KeyID: [wire.KeyIDLen]byte{2}, Nick: "bob"}},
	}
}

// sampleFrames holds a frame of every type.
func sampleFrames() []wire.Frame {
	v6 := sampleWelcome()
	v6.Group = ap("[ff15::1]:1")
	v6.Members = members(wire.MaxMembers)
	return []wire.Frame{
		&wire.Hello{Room: "lobby", Nick: "ann", Resume: 17},
		&wire.Hello{},
		&wire.Hello{Room: strings.Repeat("r", wire.MaxRoomName), Nick: strings.Repeat("n", wire.MaxNick), Resume: ^uint64(0)},
		sampleWelcome(),
		v6,
		&wire.Refuse{Reason: "room is full"},
		&wire.Refuse{Reason: strings.Repeat("x", wire.MaxText)},
		&wire.Say{ID: 3, Text: "hello"},
		&wire.Say{ID: ^uint32(0), Text: strings.Repeat("x", wire.MaxText)},
		&wire.Said{ID: 3, Seq: 99},
		&wire.Said{ID: 4, Error: "too fast"},
		&wire.Fetch{From: 10, Count: 5},
		&wire.Fetch{From: ^uint64(0), Count: ^uint16(0)},
		&wire.Gone{From: 1, To: 2},
		&wire.Gone{From: 0, To: ^uint64(0)},
		sampleDataPacket(),
		bytes.Repeat([]byte{0xcc}, wire.MaxPacket),
		[]byte{},
	}
}

// frameEqual compares frames field by field; an empty and a nil slice
// are equal.
func frameEqual(a, b wire.Frame) bool {
	switch a := a.(type) {
	case *wire.Hello:
		b, ok := b.(*wire.Hello)
		return ok && *a == *b
	case *wire.Welcome:
		b, ok := b.(*wire.Welcome)
		return ok && a.Room == b.Room && a.Epoch == b.Epoch && a.Key == b.Key && a.Next == b.Next &&
			a.Group == b.Group && slices.Equal(a.Members, b.Members)
	case *wire.Refuse:
		b, ok := b.(*wire.Refuse)
		return ok && *a == *b
	case *wire.Say:
		b, ok := b.(*wire.Say)
		return ok && *a == *b
	case *wire.Said:
		b, ok := b.(*wire.Said)
		return ok && *a == *b
	case *wire.Fetch:
		b, ok := b.(*wire.Fetch)
		return ok && *a == *b
	case *wire.Gone:
		b, ok := b.(*wire.Gone)
		return ok && *a == *b
	case []byte:
		b, ok := b.([]byte)
		return ok && bytes.Equal(a, b)
	}
	return false
}

// frameName names the i'th of sampleFrames for t.Run.
func frameName(i int, f wire.Frame) string { return fmt.Sprintf("%d-%s", i, typeName(f)) }

func typeName(v any) string {
	switch v.(type) {
	case *wire.Hello:
		return "hello"
	case *wire.Welcome:
		return "welcome"
	case *wire.Refuse:
		return "refuse"
	case *wire.Say:
		return "say"
	case *wire.Said:
		return "said"
	case *wire.Fetch:
		return "fetch"
	case *wire.Gone:
		return "gone"
	case []byte:
		return "packet"
	}
	return "?"
}

func TestFrameRoundTrip(t *testing.T) {
	for i, f := range sampleFrames() {
		t.Run(frameName(i, f), func(t *testing.T) {
			prefix := []byte("xx")
			b, err := wire.AppendFrame(prefix, f)
			if err != nil {
				t.Fatalf("AppendFrame(%T) = %v, want nil", f, err)
			}
			if !bytes.Equal(b[:2], prefix) {
				t.Fatalf("AppendFrame overwrote the prefix: %q", b[:2])
			}
			b = b[2:]
			if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 || n > wire.MaxFrame {
				t.Fatalf("length prefix = %d, want %d ≤ MaxFrame", n, len(b)-4)
			}

			got, err := wire.ParseFrame(b[4:])
			if err != nil || !frameEqual(got, f) {
				t.Errorf("ParseFrame(%x) = %+v, %v, want %+v, nil", b[4:], got, err, f)
			}

			// Two frames back to back over a stream, one buffer reused.
			stream := bytes.NewReader(append(bytes.Clone(b), b...))
			var buf []byte
			for i := range 2 {
				got, buf, err = wire.ReadFrame(stream, buf)
				if err != nil || !frameEqual(got, f) {
					t.Errorf("ReadFrame #%d = %+v, %v, want %+v, nil", i, got, err, f)
				}
			}
			if _, _, err := wire.ReadFrame(stream, buf); err != io.EOF {
				t.Errorf("ReadFrame at the end = %v, want %v", err, io.EOF)
			}
		})
	}
}

func TestFrameLayout(t *testing.T) {
	b, err := wire.AppendFrame(nil, &wire.Say{ID: 0x01020304, Text: "hi"})
	want := []byte{0, 0, 0, 9, wire.FrameSay, 1, 2, 3, 4, 0, 2, 'h', 'i'}
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("AppendFrame(say) = %x, %v, want %x, nil", b, err, want)
	}
}

func TestAppendFrameBounds(t *testing.T) {
	overNick := sampleWelcome()
	overNick.Members[1].Nick = strings.Repeat("n", wire.MaxNick+1)
	noGroup := sampleWelcome()
	noGroup.Group = netip.AddrPort{}
	tooMany := sampleWelcome()
	tooMany.Members = members(wire.MaxMembers + 1)
	long := strings.Repeat("x", wire.MaxText+1)
	tests := []struct {
		name    string
		f       wire.Frame
		wantErr error
	}{
		{"hello room", &wire.Hello{Room: strings.Repeat("r", wire.MaxRoomName+1)}, wire.ErrTooLong},
		{"hello nick", &wire.Hello{Nick: strings.Repeat("n", wire.MaxNick+1)}, wire.ErrTooLong},
		{"welcome members", tooMany, wire.ErrTooLong},
		{"welcome nick", overNick, wire.ErrTooLong},
		{"welcome group", noGroup, wire.ErrInvalid},
		{"refuse", &wire.Refuse{Reason: long}, wire.ErrTooLong},
		{"say", &wire.Say{Text: long}, wire.ErrTooLong},
		{"said", &wire.Said{Error: long}, wire.ErrTooLong},
		{"packet", make([]byte, wire.MaxPacket+1), wire.ErrTooLong},
		{"not a pointer", wire.Hello{}, wire.ErrType},
		{"unknown", "hello", wire.ErrType},
		{"nil", nil, wire.ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := wire.AppendFrame(prefix, tt.f)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("AppendFrame = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(b, prefix) {
				t.Errorf("AppendFrame on error = %q, want %q unchanged", b, prefix)
			}
		})
	}
}

// rawFrame builds a frame body (without the length prefix) from parts.
func rawFrame(typ byte, parts ...[]byte) []byte {
	b := []byte{typ}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func str8(n int) []byte { return append([]byte{byte(n)}, bytes.Repeat([]byte("s"), n)...) }

func bytes16(n int) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(n)), bytes.Repeat([]byte("b"), n)...)
}

func u(n int) []byte { return make([]byte, n) }

func rawWelcome(group []byte, nicks ...int) []byte {
	b := rawFrame(wire.FrameWelcome, u(wire.RoomIDLen), u(8), u(32), u(8), group, binary.BigEndian.AppendUint16(nil, uint16(len(nicks))))
	for i, n := range nicks {
		b = append(b, byte(i>>8), byte(i), 0, 0, 0, 0, 0, 0)
		b = append(b, str8(n)...)
	}
	return b
}

func TestParseFrameBounds(t *testing.T) {
	group := v4addr([4]byte{239, 0, 0, 1}, 1)
	maxMembers := make([]int, wire.MaxMembers)
	overMembers := make([]int, wire.MaxMembers+1)
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: accepted
	}{
		{"empty", nil, wire.ErrShort},
		{"type zero", []byte{0}, wire.ErrType},
		{"type after the last", []byte{wire.FrameGone + 1}, wire.ErrType},
		{"hello at max", rawFrame(wire.FrameHello, str8(wire.MaxRoomName), str8(wire.MaxNick), u(8)), nil},
		{"hello room over max", rawFrame(wire.FrameHello, str8(wire.MaxRoomName+1), str8(1), u(8)), wire.ErrTooLong},
		{"hello nick over max", rawFrame(wire.FrameHello, str8(1), str8(wire.MaxNick+1), u(8)), wire.ErrTooLong},
		{"hello trailing", rawFrame(wire.FrameHello, str8(1), str8(1), u(9)), wire.ErrTrailing},
		{"welcome members at max", rawWelcome(group, maxMembers...), nil},
		{"welcome members over max", rawWelcome(group, overMembers...), wire.ErrTooLong},
		{"welcome nick at max", rawWelcome(group, wire.MaxNick), nil},
		{"welcome nick over max", rawWelcome(group, wire.MaxNick+1), wire.ErrTooLong},
		{"welcome v6 group", rawWelcome(v6addr([16]byte{0xff, 0x15, 15: 1}, 1)), nil},
		{"welcome v4-in-v6 group", rawWelcome(v6addr(netip.MustParseAddr("::ffff:239.0.0.1").As16(), 1)), wire.ErrInvalid},
		{"welcome trailing", append(rawWelcome(group, 1), 0), wire.ErrTrailing},
		{"refuse at max", rawFrame(wire.FrameRefuse, bytes16(wire.MaxText)), nil},
		{"refuse over max", rawFrame(wire.FrameRefuse, bytes16(wire.MaxText+1)), wire.ErrTooLong},
		{"refuse trailing", rawFrame(wire.FrameRefuse, bytes16(1), u(1)), wire.ErrTrailing},
		{"say at max", rawFrame(wire.FrameSay, u(4), bytes16(wire.MaxText)), nil},
		{"say over max", rawFrame(wire.FrameSay, u(4), bytes16(wire.MaxText+1)), wire.ErrTooLong},
		{"say trailing", rawFrame(wire.FrameSay, u(4), bytes16(0), u(1)), wire.ErrTrailing},
		{"said at max", rawFrame(wire.FrameSaid, u(4), u(8), bytes16(wire.MaxText)), nil},
		{"said over max", rawFrame(wire.FrameSaid, u(4), u(8), bytes16(wire.MaxText+1)), wire.ErrTooLong},
		{"said trailing", rawFrame(wire.FrameSaid, u(4), u(8), bytes16(0), u(1)), wire.ErrTrailing},
		{"fetch", rawFrame(wire.FrameFetch, u(10)), nil},
		{"fetch trailing", rawFrame(wire.FrameFetch, u(11)), wire.ErrTrailing},
		{"packet at max", rawFrame(wire.FramePacket, u(wire.MaxPacket)), nil},
		{"packet over max", rawFrame(wire.FramePacket, u(wire.MaxPacket+1)), wire.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := wire.ParseFrame(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseFrame(%.40x…) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			re, err := reencodeFrame(f)
			if err != nil || !bytes.Equal(re, tt.in) {
				t.Errorf("re-encoding = %.40x…, %v, want %.40x…, nil", re, err, tt.in)
			}
		})
	}
}

func TestFrameMalformed(t *testing.T) {
	for i, f := range sampleFrames() {
		t.Run(frameName(i, f), func(t *testing.T) {
			b, err := wire.AppendFrame(nil, f)
			if err != nil {
				t.Fatalf("AppendFrame = %v", err)
			}
			body := b[4:]
			_, isPacket := f.([]byte)
			for _, n := range cuts(len(body)) {
				// Any nonempty prefix of a packet frame is a shorter packet.
				if isPacket && n > 0 {
					break
				}
				if _, err := wire.ParseFrame(body[:n:n]); err == nil {
					t.Errorf("ParseFrame(first %d of %d bytes) = nil, want an error", n, len(body))
				}
			}
			if !isPacket {
				if _, err := wire.ParseFrame(append(bytes.Clone(body), 0)); !errors.Is(err, wire.ErrTrailing) {
					t.Errorf("ParseFrame(frame and a byte) = %v, want %v", err, wire.ErrTrailing)
				}
			}
			// Every truncation of the stream fails, packets included.
			buf := make([]byte, 0, len(b))
			for _, n := range cuts(len(b)) {
				if _, _, err := wire.ReadFrame(bytes.NewReader(b[:n]), buf); err == nil {
					t.Errorf("ReadFrame(first %d of %d bytes) = nil, want an error", n, len(b))
				} else if n > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("ReadFrame(first %d of %d bytes) = %v, want %v", n, len(b), err, io.ErrUnexpectedEOF)
				}
			}
			if len(body) > 2000 {
				return // the mutations of the big frames take long and teach nothing new
			}
			mutations(body, func(name string, m []byte) {
				f, err := wire.ParseFrame(m)
				if err != nil {
					return
				}
				if re, err := reencodeFrame(f); err != nil || !bytes.Equal(re, m) {
					t.Errorf("%s: re-encoding %x = %x, %v, want the same bytes", name, m, re, err)
				}
			})
		})
	}
}

// cuts returns the lengths of the truncations to try of an n-byte
// encoding: all of them, or for big encodings those near either end and a
// sample between.
func cuts(n int) []int {
	var out []int
	for i := 0; i < n; i++ {
		if n <= 2000 || i < 500 || i >= n-500 || i%97 == 0 {
			out = append(out, i)
		}
	}
	return out
}

// lengthPrefixed is a frame header claiming n bytes, then body.
func lengthPrefixed(n uint32, body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, n), body...)
}

func TestReadFrameLength(t *testing.T) {
	// A body of MaxFrame bytes passes the length check and reaches the
	// frame decoder, which rejects its type; one more byte is refused before
	// any of the body is read.
	atMax := lengthPrefixed(wire.MaxFrame, append([]byte{0xee}, make([]byte, wire.MaxFrame-1)...))
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty stream", nil, io.EOF},
		{"short length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"zero length", lengthPrefixed(0, nil), wire.ErrTooLong},
		{"at max", atMax, wire.ErrType},
		{"over max", lengthPrefixed(wire.MaxFrame+1, nil), wire.ErrTooLong},
		{"huge", lengthPrefixed(^uint32(0), nil), wire.ErrTooLong},
		{"body short", lengthPrefixed(5, []byte{wire.FrameFetch}), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			_, _, err := wire.ReadFrame(r, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFrame = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == wire.ErrType && r.Len() != 0 {
				t.Errorf("ReadFrame left %d bytes of the body unread", r.Len())
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	b, err := wire.AppendFrame(nil, &wire.Say{ID: 1, Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	_, got, err := wire.ReadFrame(bytes.NewReader(b), buf)
	if err != nil {
		t.Fatalf("ReadFrame = %v", err)
	}
	if &got[:1][0] != &buf[:1][0] {
		t.Errorf("ReadFrame allocated a new buffer although cap(buf) = %d sufficed", cap(buf))
	}
}

func TestGoneRangeMustBeNonEmpty(t *testing.T) {
	if _, err := wire.AppendFrame(nil, &wire.Gone{From: 5, To: 5}); !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("AppendFrame(gone 5..5) = %v, want ErrInvalid", err)
	}
	body := []byte{wire.FrameGone, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3}
	if _, err := wire.ParseFrame(body); !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("ParseFrame(gone 9..3) = %v, want ErrInvalid", err)
	}
}
