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
	access byte
	room   []byte
	addrs  [][]byte // each an encoded addr
	group  []byte
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
	b = append(b, r.access)
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
	maxed.Access = wire.MaxAccess
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
		{"access at max", rawAnnounce{room: []byte("r"), addrs: rawAddrs(1), access: wire.MaxAccess}, nil},
		{"access over max", rawAnnounce{room: []byte("r"), addrs: rawAddrs(1), access: wire.MaxAccess + 1}, wire.ErrInvalid},
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
		{"MD\x05", 0, wire.ErrShort},
		{"XD\x01\x01", 0, wire.ErrMagic},
		{"MX\x01\x01", 0, wire.ErrMagic},
		{"MD\x00\x01", 0, wire.ErrVersion},
		{"MD\x01\x01", 0, wire.ErrVersion}, // the version before batch format v2
		{"MD\x02\x01", 0, wire.ErrVersion}, // the version before blocks of several batches
		{"MD\x03\x01", 0, wire.ErrVersion}, // the version with a nonce counter in every sealed packet
		{"MD\x04\x01", 0, wire.ErrVersion}, // the version with 8-byte room ids in sealed packets
		{"MD\x06\x01", 0, wire.ErrVersion},
		{"MD\x05\x01", wire.TypeAnnounce, nil},
		{"MD\x05\x02", 2, nil}, // retired, but PacketType only reads the header
		{"MD\x05\x03", wire.TypeShard, nil},
		{"MD\x05\x04", wire.TypeHeartbeat, nil},
		{"MD\x05\x05", wire.TypeNack, nil},
		{"MD\x05\x63 and more", 0x63, nil},
	}
	for _, tt := range tests {
		got, err := wire.PacketType([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("PacketType(%q) = %d, %v, want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if errors.Is(err, wire.ErrVersion) {
			if v := wire.PeerVersion([]byte(tt.in)); v != tt.in[2] {
				t.Errorf("PeerVersion(%q) = %d, want %d", tt.in, v, tt.in[2])
			}
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
	shard := sampleShardPacket()
	nack := sampleNackPacket()
	parsers := map[string]func([]byte) error{
		"announce": func(b []byte) error { _, err := wire.ParseAnnounce(b); return err },
		"sealed":   func(b []byte) error { _, err := wire.ParseSealedHeader(b); return err },
		"nack":     func(b []byte) error { _, err := wire.ParseNackHeader(b); return err },
	}
	tests := []struct {
		name    string
		parser  string
		in      []byte
		wantErr error
	}{
		{"announce magic", "announce", withHeader(ann, "md\x04\x01"), wire.ErrMagic},
		{"announce version", "announce", withHeader(ann, "MD\x01\x01"), wire.ErrVersion},
		{"announce as shard", "announce", withHeader(ann, "MD\x05\x03"), wire.ErrType},
		{"announce unknown type", "announce", withHeader(ann, "MD\x05\x09"), wire.ErrType},
		{"shard magic", "sealed", withHeader(shard, "DM\x04\x03"), wire.ErrMagic},
		{"shard version", "sealed", withHeader(shard, "MD\xff\x03"), wire.ErrVersion},
		{"shard as announce", "sealed", withHeader(shard, "MD\x05\x01"), wire.ErrType},
		{"shard as retired data", "sealed", withHeader(shard, "MD\x05\x02"), wire.ErrType},
		{"shard as nack", "sealed", withHeader(shard, "MD\x05\x05"), wire.ErrType},
		{"shard unknown type", "sealed", withHeader(shard, "MD\x05\x00"), wire.ErrType},
		{"nack magic", "nack", withHeader(nack, "MM\x04\x05"), wire.ErrMagic},
		{"nack version", "nack", withHeader(nack, "MD\x00\x05"), wire.ErrVersion},
		{"nack as shard", "nack", withHeader(nack, "MD\x05\x03"), wire.ErrType},
		{"nack as heartbeat", "nack", withHeader(nack, "MD\x05\x04"), wire.ErrType},
		{"nack as retired data", "nack", withHeader(nack, "MD\x05\x02"), wire.ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := parsers[tt.parser](tt.in); !errors.Is(err, tt.wantErr) {
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

var (
	sampleRoom = [wire.RoomIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	sampleTag  = wire.TagOf(sampleRoom)
)

func sampleShardInfo() wire.ShardInfo { return wire.ShardInfo{Block: 7, Index: 2, K: 3, Sent: 5} }

// sampleShardPacket is a shard packet with a stand-in ciphertext.
func sampleShardPacket() []byte {
	h := wire.SealedHeader{Room: sampleTag, Epoch: 2}
	return append(wire.AppendShardHeader(nil, h, sampleShardInfo()), bytes.Repeat([]byte{0xee}, 40)...)
}

// sampleHeartbeatPacket is a heartbeat packet with a stand-in ciphertext.
func sampleHeartbeatPacket() []byte {
	h := wire.SealedHeader{Room: sampleTag, Epoch: 2}
	return append(wire.AppendHeartbeatHeader(nil, h, 99), bytes.Repeat([]byte{0xee}, wire.HeartbeatLen+wire.TagLen)...)
}

// parseSealed decodes the headers of a shard or heartbeat packet as a
// receiver does: the sealed header, then the shard's place in its block or
// the heartbeat's counter.
func parseSealed(pkt []byte) (h wire.SealedHeader, si wire.ShardInfo, counter uint32, err error) {
	if h, err = wire.ParseSealedHeader(pkt); err != nil {
		return
	}
	if h.Type == wire.TypeShard {
		si, err = wire.ParseShardInfo(pkt)
	} else {
		counter, err = wire.ParseHeartbeatCounter(pkt)
	}
	return
}

// reencodeSealed encodes the headers of a decoded shard or heartbeat packet
// again and appends the rest of pkt after them.
func reencodeSealed(h wire.SealedHeader, si wire.ShardInfo, counter uint32, pkt []byte) []byte {
	if h.Type == wire.TypeShard {
		return append(wire.AppendShardHeader(nil, h, si), pkt[wire.ShardHeaderLen:]...)
	}
	return append(wire.AppendHeartbeatHeader(nil, h, counter), pkt[wire.HeartbeatHeaderLen:]...)
}

func TestSealedHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		h    wire.SealedHeader
		rest int
	}{
		{wire.SealedHeader{Type: wire.TypeHeartbeat}, wire.TagLen},
		{wire.SealedHeader{Type: wire.TypeHeartbeat, Room: sampleTag, Epoch: 2}, 4 + wire.HeartbeatLen + wire.TagLen},
		{wire.SealedHeader{Type: wire.TypeShard, Room: sampleTag, Epoch: 3}, 100},
		{wire.SealedHeader{Type: wire.TypeShard, Room: wire.RoomTag{0xff, 0xff, 0xff, 0xff}, Epoch: 0xff}, wire.MaxPacket - wire.SealedHeaderLen},
	}
	for _, tt := range tests {
		rest := bytes.Repeat([]byte{0x5a}, tt.rest)
		hdr := wire.AppendSealedHeader(nil, tt.h)
		if len(hdr) != wire.SealedHeaderLen {
			t.Errorf("len(AppendSealedHeader(%+v)) = %d, want %d", tt.h, len(hdr), wire.SealedHeaderLen)
		}
		pkt := append(hdr, rest...)
		got, err := wire.ParseSealedHeader(pkt)
		if err != nil || got != tt.h {
			t.Errorf("ParseSealedHeader(%x) = %+v, %v, want %+v, nil", pkt, got, err, tt.h)
		}
		if re := append(wire.AppendSealedHeader(nil, got), rest...); !bytes.Equal(re, pkt) {
			t.Errorf("re-encoding = %x, want %x", re, pkt)
		}
	}
}

func TestSealedHeaderLayout(t *testing.T) {
	h := wire.SealedHeader{Type: wire.TypeHeartbeat, Room: sampleTag, Epoch: 0x11}
	want := []byte{'M', 'D', 5, wire.TypeHeartbeat, 1, 2, 3, 4, 0x11}
	if got := wire.AppendSealedHeader(nil, h); !bytes.Equal(got, want) {
		t.Errorf("AppendSealedHeader(%+v) = %x, want %x", h, got, want)
	}
	want = append(want, 0x21, 0x22, 0x23, 0x24)
	if got := wire.AppendHeartbeatHeader(nil, h, 0x21222324); !bytes.Equal(got, want) {
		t.Errorf("AppendHeartbeatHeader(%+v, 0x21222324) = %x, want %x", h, got, want)
	}
}

func TestSealedHeaderShort(t *testing.T) {
	for _, typ := range []byte{wire.TypeShard, wire.TypeHeartbeat} {
		pkt := append(wire.AppendSealedHeader(nil, wire.SealedHeader{Type: typ}), make([]byte, wire.TagLen)...)
		for n := range len(pkt) {
			if _, err := wire.ParseSealedHeader(pkt[:n]); err == nil {
				t.Errorf("ParseSealedHeader(first %d bytes of type %d) = nil, want an error", n, typ)
			}
		}
		if _, err := wire.ParseSealedHeader(pkt); err != nil {
			t.Errorf("ParseSealedHeader(%d bytes of type %d) = %v, want nil", len(pkt), typ, err)
		}
	}
}

func TestHeartbeatHeader(t *testing.T) {
	h := wire.SealedHeader{Type: wire.TypeHeartbeat, Room: sampleTag, Epoch: 7}
	for _, c := range []uint32{1, 2, 1 << 24, ^uint32(0)} {
		pkt := append(wire.AppendHeartbeatHeader(nil, h, c), make([]byte, wire.TagLen)...)
		if len(pkt) != wire.HeartbeatHeaderLen+wire.TagLen {
			t.Errorf("heartbeat header of %d bytes, want %d", len(pkt)-wire.TagLen, wire.HeartbeatHeaderLen)
		}
		got, sh, gc, err := parseSealed(pkt)
		if err != nil || got != h || gc != c || sh != (wire.ShardInfo{}) {
			t.Errorf("parse(heartbeat, counter %d) = %+v, %d, %v, want %+v, %d, nil", c, got, gc, err, h, c)
		}
		if re := reencodeSealed(got, sh, gc, pkt); !bytes.Equal(re, pkt) {
			t.Errorf("re-encoding = %x, want %x", re, pkt)
		}
		// Short of a tag, or of the counter: no heartbeat.
		for _, n := range []int{len(pkt) - 1, wire.SealedHeaderLen + wire.TagLen} {
			if _, err := wire.ParseHeartbeatCounter(pkt[:n]); !errors.Is(err, wire.ErrShort) {
				t.Errorf("ParseHeartbeatCounter(%d bytes) = %v, want %v", n, err, wire.ErrShort)
			}
		}
	}
	// Counter 0 is never sent: the counter counts from 1.
	pkt := append(wire.AppendHeartbeatHeader(nil, h, 0), make([]byte, wire.TagLen)...)
	if _, err := wire.ParseHeartbeatCounter(pkt); !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("ParseHeartbeatCounter(counter 0) = %v, want %v", err, wire.ErrInvalid)
	}
}

func TestShardHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		h  wire.SealedHeader
		si wire.ShardInfo
	}{
		{wire.SealedHeader{Room: sampleTag, Epoch: 1}, wire.ShardInfo{Block: 1, Index: 0, K: 1, Sent: 1}},
		// The type is always TypeShard, whatever h says.
		{wire.SealedHeader{Type: wire.TypeHeartbeat, Room: sampleTag, Epoch: 2}, sampleShardInfo()},
		{wire.SealedHeader{Epoch: 0xff}, wire.ShardInfo{Block: wire.MaxBlockNo, Index: wire.MaxShards - 1, K: wire.MaxBlockShards, Sent: wire.MaxShards}},
		{wire.SealedHeader{Room: sampleTag}, wire.ShardInfo{Block: 5, Index: 40, K: 2, Sent: 2}}, // a repair shard, after those sent
	}
	for _, tt := range tests {
		hdr := wire.AppendShardHeader(nil, tt.h, tt.si)
		if len(hdr) != wire.ShardHeaderLen {
			t.Errorf("len(AppendShardHeader) = %d, want %d", len(hdr), wire.ShardHeaderLen)
		}
		pkt := append(hdr, bytes.Repeat([]byte{0x5a}, wire.TagLen+3)...)
		h, err := wire.ParseSealedHeader(pkt)
		want := tt.h
		want.Type = wire.TypeShard
		if err != nil || h != want {
			t.Errorf("ParseSealedHeader(%x) = %+v, %v, want %+v, nil", pkt, h, err, want)
		}
		si, err := wire.ParseShardInfo(pkt)
		if err != nil || si != tt.si {
			t.Errorf("ParseShardInfo(%x) = %+v, %v, want %+v, nil", pkt, si, err, tt.si)
		}
		if re := reencodeSealed(h, si, 0, pkt); !bytes.Equal(re, pkt) {
			t.Errorf("re-encoding = %x, want %x", re, pkt)
		}
	}
}

func TestShardHeaderLayout(t *testing.T) {
	h := wire.SealedHeader{Room: sampleTag, Epoch: 0x11}
	si := wire.ShardInfo{Block: 0x313233, Index: 4, K: 3, Sent: 5}
	want := []byte{'M', 'D', 5, wire.TypeShard, 1, 2, 3, 4,
		0x11,
		0x31, 0x32, 0x33,
		4, 3, 5}
	if got := wire.AppendShardHeader([]byte{}, h, si); !bytes.Equal(got, want) {
		t.Errorf("AppendShardHeader = %x, want %x", got, want)
	}
	if len(want) != 15 || wire.ShardHeaderLen != 15 {
		t.Errorf("shard header of %d bytes (ShardHeaderLen %d), want 15", len(want), wire.ShardHeaderLen)
	}
}

// rawShard is a shard packet with the given shard header fields and the
// shortest ciphertext, built without the encoder.
func rawShard(block uint32, index, k, sent byte) []byte {
	b := wire.AppendSealedHeader(nil, wire.SealedHeader{Type: wire.TypeShard, Room: sampleTag, Epoch: 1})
	b = append(b, byte(block>>16), byte(block>>8), byte(block))
	b = append(b, index, k, sent)
	return append(b, make([]byte, wire.TagLen)...)
}

func TestParseShardInfoBounds(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: accepted
	}{
		{"minima", rawShard(1, 0, 1, 1), nil},
		{"maxima", rawShard(wire.MaxBlockNo, wire.MaxShards-1, wire.MaxBlockShards, wire.MaxShards), nil},
		{"block zero", rawShard(0, 0, 1, 1), wire.ErrInvalid},
		{"k zero", rawShard(1, 0, 0, 1), wire.ErrInvalid},
		{"k zero sent zero", rawShard(1, 0, 0, 0), wire.ErrInvalid},
		{"k at max", rawShard(1, 0, wire.MaxBlockShards, wire.MaxBlockShards), nil},
		{"k over max", rawShard(1, 0, wire.MaxBlockShards+1, wire.MaxBlockShards+1), wire.ErrInvalid},
		{"k 255", rawShard(1, 0, 0xff, 0xff), wire.ErrInvalid},
		{"index at max", rawShard(1, wire.MaxShards-1, 1, 1), nil},
		{"index over max", rawShard(1, wire.MaxShards, 1, 1), wire.ErrInvalid},
		{"sent below k", rawShard(1, 0, 4, 3), wire.ErrInvalid},
		{"sent k", rawShard(1, 0, 4, 4), nil},
		{"sent at max", rawShard(1, 0, 4, wire.MaxShards), nil},
		{"bare tag", rawShard(1, 0, 1, 1)[:wire.ShardHeaderLen+wire.TagLen], nil},
		{"short of a tag", rawShard(1, 0, 1, 1)[:wire.ShardHeaderLen+wire.TagLen-1], wire.ErrShort},
		{"sealed header only", rawShard(1, 0, 1, 1)[:wire.SealedHeaderLen+wire.TagLen], wire.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := wire.ParseSealedHeader(tt.in)
			if err != nil {
				t.Fatalf("ParseSealedHeader = %v, want nil", err)
			}
			si, err := wire.ParseShardInfo(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseShardInfo(%x) = %+v, %v, want %v", tt.in, si, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if re := reencodeSealed(h, si, 0, tt.in); !bytes.Equal(re, tt.in) {
				t.Errorf("re-encoding = %x, want %x", re, tt.in)
			}
		})
	}
}

func TestShardMalformed(t *testing.T) {
	for _, pkt := range [][]byte{sampleShardPacket(), sampleHeartbeatPacket()} {
		mutations(pkt, func(name string, m []byte) {
			h, si, c, err := parseSealed(m)
			if err != nil {
				return
			}
			if re := reencodeSealed(h, si, c, m); !bytes.Equal(re, m) {
				t.Errorf("%s: re-encoding %x = %x, want the same bytes", name, m, re)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	for _, hb := range []wire.Heartbeat{{}, {Next: 1, LastBlock: 0}, {Next: 42, LastBlock: 7}, {Next: ^uint64(0), LastBlock: ^uint64(0)}} {
		b := wire.AppendHeartbeat([]byte{}, hb)
		if len(b) != wire.HeartbeatLen {
			t.Errorf("len(AppendHeartbeat(%+v)) = %d, want %d", hb, len(b), wire.HeartbeatLen)
		}
		got, err := wire.ParseHeartbeat(b)
		if err != nil || got != hb {
			t.Errorf("ParseHeartbeat(%x) = %+v, %v, want %+v, nil", b, got, err, hb)
		}
		if re := wire.AppendHeartbeat(nil, got); !bytes.Equal(re, b) {
			t.Errorf("re-encoding = %x, want %x", re, b)
		}
	}
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if got := wire.AppendHeartbeat(nil, wire.Heartbeat{Next: 0x0102030405060708, LastBlock: 0x090a0b0c0d0e0f10}); !bytes.Equal(got, want) {
		t.Errorf("AppendHeartbeat layout = %x, want %x", got, want)
	}
	for _, n := range []int{0, 1, wire.HeartbeatLen - 1, wire.HeartbeatLen + 1, 2 * wire.HeartbeatLen} {
		if _, err := wire.ParseHeartbeat(make([]byte, n)); !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("ParseHeartbeat(%d bytes) = %v, want %v", n, err, wire.ErrInvalid)
		}
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

// In a block, a batch of one sender's records leaves out their sender
// indexes, one byte each; a batch of several senders is as signed. Both
// decode to the records they were made of.
func TestBlockBatchForm(t *testing.T) {
	for _, tt := range []struct {
		name  string
		recs  []wire.Record
		saved int
	}{
		{"one sender, one line", soloRecords(1), 1},
		{"one sender", soloRecords(40), 40},
		{"one sender, longest lines", []wire.Record{{Kind: wire.KindMessage, Nick: "n", Text: strings.Repeat("x", wire.MaxText)}}, 1},
		{"two senders", sampleRecords(), 0},
		{"four senders", benchRecs(8), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := encodeBatch(t, 9, tt.recs)
			blk := wire.AppendBlockBatch([]byte{0xee}, body)
			if got, want := len(blk)-1, 2+len(body)-tt.saved; got != want {
				t.Fatalf("AppendBlockBatch of a %d-byte body took %d bytes, want %d", len(body), got, want)
			}
			senders := 2
			if tt.saved > 0 {
				senders = 1
			}
			if n := wire.BlockBatchLen(len(body), len(tt.recs), senders); n != len(blk)-3 {
				t.Errorf("BlockBatchLen = %d, want %d", n, len(blk)-3)
			}
			got, rest, err := wire.NextBlockBatch(blk[1:])
			if err != nil || len(rest) != 0 {
				t.Fatalf("NextBlockBatch = %d bytes left, %v", len(rest), err)
			}
			bt, err := wire.ParseBlockBatch(got, nil, nil)
			if err != nil || bt.First != 9 || !slices.Equal(bt.Records, tt.recs) {
				t.Fatalf("ParseBlockBatch = %+v, %v, want the records at 9", bt, err)
			}
			if tt.saved > 0 {
				// The signed form is not the block's: read as one, it fails.
				if _, err := wire.ParseBlockBatch(body, nil, nil); err == nil {
					t.Errorf("ParseBlockBatch(signed form) = nil, want an error")
				}
			}
		})
	}
}

// soloRecords is n lines of one sender's: a batch whose records carry
// no sender index in a block.
func soloRecords(n int) []wire.Record {
	recs := make([]wire.Record, n)
	for i := range recs {
		recs[i] = wire.Record{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{7}, Nick: "solo", Text: strings.Repeat("s", i)}
	}
	return recs
}

func manyRecords(n int) []wire.Record {
	recs := make([]wire.Record, n)
	for i := range recs {
		recs[i] = wire.Record{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{byte(i)}, Nick: "n", Text: "t"}
	}
	return recs
}

// recordOverhead is the encoded size of a record with text bytes of text
// beyond its text: its head (the uvarint of text × 8 + kind, for any kind)
// and its sender.
func recordOverhead(text int) int {
	return len(binary.AppendUvarint(nil, uint64(text)<<3|wire.MaxKind)) + 1
}

// senderOverhead is the encoded size of a sender with an empty nick.
const senderOverhead = wire.KeyIDLen + 1

// batchOverhead is the encoded size of a batch without its senders and
// records.
const batchOverhead = 8 + 1 + 1 + wire.SigLen

// fullBatch returns records whose batch is exactly MaxBatch+extra bytes:
// a record at MaxText and one filling the rest, from one sender.
func fullBatch(extra int) []wire.Record {
	// The rest is over 2047 bytes, so its head is 3 bytes long.
	rest := wire.MaxBatch + extra - batchOverhead - senderOverhead - recordOverhead(wire.MaxText) - wire.MaxText - recordOverhead(1<<11)
	return []wire.Record{
		{Kind: wire.KindMessage, Text: strings.Repeat("a", wire.MaxText)},
		{Kind: wire.KindMessage, Text: strings.Repeat("b", rest)},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		first uint64
		recs  []wire.Record
	}{
		{"one record", 1, sampleRecords()[:1]},
		{"empty record", 1, []wire.Record{{Kind: wire.KindJoin}}},
		{"sample", 42, sampleRecords()},
		{"maxima", 1, []wire.Record{{Kind: wire.MaxKind, Nick: strings.Repeat("n", wire.MaxNick), Text: strings.Repeat("t", wire.MaxText)}}},
		{"max records", ^uint64(0) - wire.MaxRecords, manyRecords(wire.MaxRecords)},
		{"last sequence", ^uint64(0) - 1, manyRecords(1)},
		{"MaxBatch bytes", 9, fullBatch(0)},
		{"unicode", 7, []wire.Record{{Kind: wire.KindMessage, Nick: "zoë", Text: "ciao 👋"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, pkt := encodeBatch(t, tt.first, tt.recs)
			if len(pkt) > wire.MaxBatch {
				t.Fatalf("batch of %d bytes, over MaxBatch", len(pkt))
			}
			scratch := make([]wire.Record, 0, 1)
			got, err := wire.ParseBatch(pkt, scratch)
			if err != nil {
				t.Fatalf("ParseBatch(%.40x…) = %v, want nil", pkt, err)
			}
			if got.First != tt.first || !slices.Equal(got.Records, tt.recs) {
				t.Errorf("ParseBatch = first %d, %d records, want %d, %d records", got.First, len(got.Records), tt.first, len(tt.recs))
			}
			if !bytes.Equal(got.Sig[:], fakeSig) {
				t.Errorf("Sig = %x, want %x", got.Sig, fakeSig)
			}
			if !bytes.Equal(got.Signed, body) {
				t.Errorf("Signed = %.40x…, want the body %.40x…", got.Signed, body)
			}
			re, err := reencodeBatch(&got)
			if err != nil || !bytes.Equal(re, pkt) {
				t.Errorf("re-encoding = %.40x…, %v, want %.40x…, nil", re, err, pkt)
			}
		})
	}
	if _, pkt := encodeBatch(t, 1, fullBatch(0)); len(pkt) != wire.MaxBatch {
		t.Errorf("fullBatch(0) encodes to %d bytes, want MaxBatch = %d", len(pkt), wire.MaxBatch)
	}
}

func TestBatchLayout(t *testing.T) {
	ann := [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	recs := []wire.Record{
		{Kind: wire.KindMessage, KeyID: ann, Nick: "a", Text: "hi"},
		{Kind: wire.KindJoin, KeyID: [wire.KeyIDLen]byte{9}, Nick: "b"},
		{Kind: wire.KindMessage, KeyID: ann, Nick: "a", Text: "yo"},
		{Kind: wire.KindMessage, KeyID: ann, Nick: "c", Text: ""}, // a new nick is a new sender
	}
	got, err := wire.AppendBatchBody([]byte("x"), 0x0102030405060708, recs)
	want := []byte{'x', 1, 2, 3, 4, 5, 6, 7, 8, 4, 3,
		1, 2, 3, 4, 5, 6, 7, 8, 1, 'a',
		9, 0, 0, 0, 0, 0, 0, 0, 1, 'b',
		1, 2, 3, 4, 5, 6, 7, 8, 1, 'c',
		2<<3 | wire.KindMessage, 0, 'h', 'i',
		wire.KindJoin, 1,
		2<<3 | wire.KindMessage, 0, 'y', 'o',
		wire.KindMessage, 2,
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("AppendBatchBody = %x, %v, want %x, nil", got, err, want)
	}
	n := 0
	for i := range recs {
		n += wire.RecordLen(&recs[i], i != 2)
	}
	if n != len(want)-1-wire.BatchHeaderLen {
		t.Errorf("RecordLen adds up to %d bytes, want the %d of senders and records", n, len(want)-1-wire.BatchHeaderLen)
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
		{"records over max", 1, manyRecords(wire.MaxRecords + 1), wire.ErrInvalid},
		{"no records", 1, nil, wire.ErrInvalid},
		{"empty records", 1, []wire.Record{}, wire.ErrInvalid},
		{"nick at max", 1, []wire.Record{{Kind: 1, Nick: strings.Repeat("n", wire.MaxNick)}}, nil},
		{"nick over max", 1, []wire.Record{{Kind: 1, Nick: strings.Repeat("n", wire.MaxNick+1)}}, wire.ErrInvalid},
		{"text at max", 1, []wire.Record{{Kind: 1, Text: strings.Repeat("t", wire.MaxText)}}, nil},
		{"text over max", 1, []wire.Record{{Kind: 1, Text: strings.Repeat("t", wire.MaxText+1)}}, wire.ErrInvalid},
		{"batch at max", 1, fullBatch(0), nil},
		{"batch over max", 1, fullBatch(1), wire.ErrTooLong},
		{"kind zero", 1, []wire.Record{{Kind: 1}, {Kind: 0}}, wire.ErrInvalid},
		{"kind at max", 1, []wire.Record{{Kind: wire.MaxKind}}, nil},
		{"kind over max", 1, []wire.Record{{Kind: 1}, {Kind: wire.MaxKind + 1}}, wire.ErrInvalid},
		{"first zero", 0, manyRecords(1), wire.ErrInvalid},
		{"last sequence", ^uint64(0) - 1, manyRecords(1), nil},
		{"sequence wraps", ^uint64(0), manyRecords(1), wire.ErrInvalid},
		{"many wrap", ^uint64(0) - 1, manyRecords(2), wire.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := wire.AppendBatchBody(prefix, tt.first, tt.recs)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("AppendBatchBody(%d, …) = %v, want %v", tt.first, err, tt.wantErr)
			}
			if err != nil && !bytes.Equal(b, prefix) {
				t.Errorf("AppendBatchBody on error = %.40q…, want %q unchanged", b, prefix)
			}
		})
	}
}

// rawSender encodes a sender by hand: key id {id}, a nick of nick bytes.
func rawSender(id byte, nick int) []byte {
	b := append([]byte{id}, make([]byte, wire.KeyIDLen-1)...)
	b = append(b, byte(nick))
	return append(b, bytes.Repeat([]byte("n"), nick)...)
}

// rawRecord encodes a record by hand, with lengths the encoder refuses.
func rawRecord(kind, sender byte, text int) []byte {
	b := binary.AppendUvarint(nil, uint64(text)<<3|uint64(kind))
	b = append(b, sender)
	return append(b, bytes.Repeat([]byte("t"), text)...)
}

// rawHeadRecord is a record with the head bytes given, sender 0 and text
// bytes of text.
func rawHeadRecord(head []byte, text int) []byte {
	b := append(bytes.Clone(head), 0)
	return append(b, bytes.Repeat([]byte("t"), text)...)
}

func rawBatch(first uint64, senders [][]byte, recs ...[]byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, first)
	b = append(b, byte(len(recs)), byte(len(senders)))
	for _, s := range senders {
		b = append(b, s...)
	}
	for _, r := range recs {
		b = append(b, r...)
	}
	return append(b, fakeSig...)
}

func TestParseBatchBounds(t *testing.T) {
	max := make([][]byte, wire.MaxRecords)
	maxSenders := make([][]byte, wire.MaxRecords)
	for i := range max {
		max[i] = rawRecord(1, byte(i), 1)
		maxSenders[i] = rawSender(byte(i), 1)
	}
	s0 := [][]byte{rawSender(0, 0)}
	s1 := [][]byte{rawSender(1, 1)}
	// Two records filling MaxBatch exactly, and one byte more.
	fill := wire.MaxBatch - batchOverhead - senderOverhead - recordOverhead(wire.MaxText) - wire.MaxText - recordOverhead(1<<11)
	atMax := rawBatch(1, s0, rawRecord(1, 0, wire.MaxText), rawRecord(1, 0, fill))
	overMax := rawBatch(1, s0, rawRecord(1, 0, wire.MaxText), rawRecord(1, 0, fill+1))
	one := rawBatch(1, s1, rawRecord(1, 0, 1))
	two := [][]byte{rawSender(1, 1), rawSender(2, 1)}
	// A count of one before two records leaves the second trailing.
	under := rawBatch(1, s1, rawRecord(1, 0, 1), rawRecord(1, 0, 1))
	under[8] = 1
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: accepted
	}{
		{"one record", one, nil},
		{"records at max", rawBatch(1, maxSenders, max...), nil},
		{"one sender, many records", rawBatch(1, s1, rawRecord(1, 0, 1), rawRecord(2, 0, 0), rawRecord(1, 0, 3)), nil},
		{"senders in order", rawBatch(1, two, rawRecord(1, 0, 1), rawRecord(1, 1, 1), rawRecord(1, 0, 1)), nil},
		{"senders out of order", rawBatch(1, two, rawRecord(1, 1, 1), rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"sender unused", rawBatch(1, two, rawRecord(1, 0, 1), rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"sender twice", rawBatch(1, [][]byte{rawSender(1, 1), rawSender(1, 1)}, rawRecord(1, 0, 1), rawRecord(1, 1, 1)), wire.ErrInvalid},
		{"same key, other nick", rawBatch(1, [][]byte{rawSender(1, 1), rawSender(1, 2)}, rawRecord(1, 0, 1), rawRecord(1, 1, 1)), nil},
		{"sender index out of range", rawBatch(1, s1, rawRecord(1, 1, 1)), wire.ErrInvalid},
		{"no senders", rawBatch(1, nil, rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"more senders than records", rawBatch(1, two, rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"nick at max", rawBatch(1, [][]byte{rawSender(1, wire.MaxNick)}, rawRecord(1, 0, 0)), nil},
		{"nick over max", rawBatch(1, [][]byte{rawSender(1, wire.MaxNick+1)}, rawRecord(1, 0, 0)), wire.ErrTooLong},
		{"text at max", rawBatch(1, s0, rawRecord(1, 0, wire.MaxText)), nil},
		{"text over max", rawBatch(1, s0, rawRecord(1, 0, wire.MaxText+1)), wire.ErrTooLong},
		{"batch at max", atMax, nil},
		{"batch over max", overMax, wire.ErrTooLong},
		{"kind zero", rawBatch(1, s1, rawRecord(0, 0, 1)), wire.ErrInvalid},
		{"kind at max", rawBatch(1, s1, rawRecord(wire.MaxKind, 0, 1)), nil},
		// The head's shortest uvarint only: a text of 1 byte, kind 1, is
		// head 0x09, not 0x89 0x00.
		{"head of two bytes", rawBatch(1, s0, rawHeadRecord([]byte{0x89, 0x80, 0x00}, 1)), wire.ErrInvalid},
		{"head padded", rawBatch(1, s0, rawHeadRecord([]byte{0x89, 0x00}, 1)), wire.ErrInvalid},
		{"head of 16 bytes in two", rawBatch(1, s0, rawHeadRecord([]byte{0x81, 0x01}, 16)), nil},
		{"head of four bytes", rawBatch(1, s0, rawHeadRecord([]byte{0x81, 0x80, 0x80, 0x01}, 1)), wire.ErrTooLong},
		{"head of three bytes over MaxText", rawBatch(1, s0, rawHeadRecord([]byte{0x81, 0x80, 0x7f}, 0)), wire.ErrTooLong},
		{"head cut short", rawBatch(1, s0, []byte{0x81}), wire.ErrShort},
		{"first zero", rawBatch(0, s1, rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"no records", rawBatch(1, nil), wire.ErrInvalid},
		{"no records first zero", rawBatch(0, nil), wire.ErrInvalid},
		{"last sequence", rawBatch(^uint64(0)-1, s1, rawRecord(1, 0, 1)), nil},
		{"sequence wraps", rawBatch(^uint64(0), s1, rawRecord(1, 0, 1)), wire.ErrInvalid},
		{"count over records", append(one[:8:8], append([]byte{2}, one[9:]...)...), wire.ErrShort},
		{"count under records", under, wire.ErrTrailing},
		{"signature only", fakeSig, wire.ErrShort},
		{"short of a signature", fakeSig[1:], wire.ErrShort},
		{"empty", nil, wire.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bt, err := wire.ParseBatch(tt.in, nil)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseBatch(%.40x…) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(bt.Records) == 0 {
				t.Errorf("ParseBatch accepted a batch without records")
			}
			re, err := reencodeBatch(&bt)
			if err != nil || !bytes.Equal(re, tt.in) {
				t.Errorf("re-encoding = %.40x…, %v, want %.40x…, nil", re, err, tt.in)
			}
		})
	}
}

func TestBatchMalformed(t *testing.T) {
	for _, recs := range [][]wire.Record{sampleRecords()[:1], sampleRecords()} {
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

func sampleNack() *wire.Nack {
	return &wire.Nack{
		KeyID:   [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Session: 0x1122334455667788,
		Counter: 9,
		Entries: []wire.NackEntry{{Block: 3, Missing: 1}, {Block: 4, Missing: wire.MissingAll}},
	}
}

func nackEntries(n int) []wire.NackEntry {
	out := make([]wire.NackEntry, n)
	for i := range out {
		out[i] = wire.NackEntry{Block: uint64(i + 1), Missing: byte(i%wire.MaxShards + 1)}
	}
	return out
}

// sampleNackPacket is a NACK packet with a stand-in ciphertext.
func sampleNackPacket() []byte {
	h := wire.NackHeader{Room: sampleRoom, Epoch: 2, Nonce: [wire.NonceXLen]byte{0: 0xaa, 23: 0xbb}}
	return append(wire.AppendNackHeader(nil, h), bytes.Repeat([]byte{0xee}, 30)...)
}

func reencodeNackBody(n *wire.Nack) ([]byte, error) { return wire.AppendNackBody(nil, n) }

func TestNackBodyRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		n    *wire.Nack
	}{
		{"sample", sampleNack()},
		{"one entry", &wire.Nack{Session: 1, Counter: 1, Entries: []wire.NackEntry{{Block: 1, Missing: 1}}}},
		{"maxima", &wire.Nack{KeyID: [wire.KeyIDLen]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Session: ^uint64(0), Counter: ^uint64(0), Entries: []wire.NackEntry{{Block: ^uint64(0), Missing: 0xff}}}},
		{"entries at max", &wire.Nack{KeyID: [wire.KeyIDLen]byte{7}, Session: 2, Counter: 3, Entries: nackEntries(wire.MaxNackEntries)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("xx")
			b, err := wire.AppendNackBody(prefix, tt.n)
			if err != nil {
				t.Fatalf("AppendNackBody = %v, want nil", err)
			}
			if !bytes.Equal(b[:2], prefix) {
				t.Fatalf("AppendNackBody overwrote the prefix: %q", b[:2])
			}
			b = b[2:]
			if want := wire.KeyIDLen + 8 + 8 + 1 + 9*len(tt.n.Entries); len(b) != want {
				t.Errorf("body of %d bytes, want %d", len(b), want)
			}
			got := wire.Nack{Entries: make([]wire.NackEntry, 5, 8)} // stale entries to be overwritten
			if err := wire.ParseNackBody(b, &got); err != nil {
				t.Fatalf("ParseNackBody(%x) = %v, want nil", b, err)
			}
			if got.KeyID != tt.n.KeyID || got.Session != tt.n.Session || got.Counter != tt.n.Counter || !slices.Equal(got.Entries, tt.n.Entries) {
				t.Errorf("ParseNackBody = %+v, want %+v", got, *tt.n)
			}
			re, err := reencodeNackBody(&got)
			if err != nil || !bytes.Equal(re, b) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, b)
			}
		})
	}
}

func TestNackBodyLayout(t *testing.T) {
	got, err := wire.AppendNackBody(nil, &wire.Nack{
		KeyID:   [wire.KeyIDLen]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Session: 0x2122232425262728,
		Counter: 0x3132333435363738,
		Entries: []wire.NackEntry{{Block: 0x1112131415161718, Missing: 3}, {Block: 2, Missing: wire.MissingAll}},
	})
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8,
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
		0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 2,
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 3,
		0, 0, 0, 0, 0, 0, 0, 2, 0xff}
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("AppendNackBody = %x, %v, want %x, nil", got, err, want)
	}
}

func TestNackBodyEncodeBounds(t *testing.T) {
	one := []wire.NackEntry{{Block: 1, Missing: 1}}
	tests := []struct {
		name             string
		session, counter uint64
		entries          []wire.NackEntry
	}{
		{"no entries", 1, 1, nil},
		{"entries over max", 1, 1, nackEntries(wire.MaxNackEntries + 1)},
		{"255 entries", 1, 1, nackEntries(255)},
		{"256 entries", 1, 1, nackEntries(256)},
		// What ParseNackBody rejects, the encoder refuses to write.
		{"block zero", 1, 1, []wire.NackEntry{{Block: 1, Missing: 1}, {Block: 0, Missing: 1}}},
		{"missing zero", 1, 1, []wire.NackEntry{{Block: 1, Missing: 0}}},
		{"session zero", 0, 1, one},
		{"counter zero", 1, 0, one},
	}
	for _, tt := range tests {
		prefix := []byte("keep")
		b, err := wire.AppendNackBody(prefix, &wire.Nack{Session: tt.session, Counter: tt.counter, Entries: tt.entries})
		if !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("AppendNackBody(%s) = %v, want %v", tt.name, err, wire.ErrInvalid)
		}
		if !bytes.Equal(b, prefix) {
			t.Errorf("AppendNackBody(%s) on error = %q, want %q unchanged", tt.name, b, prefix)
		}
	}
}

// rawNackBody encodes a NACK body by hand: a zero key id, session 1,
// counter 1, count, then the entries.
func rawNackBody(count int, entries ...wire.NackEntry) []byte {
	return rawNackBodySC(1, 1, count, entries...)
}

// rawNackBodySC is rawNackBody with the given session and counter.
func rawNackBodySC(session, counter uint64, count int, entries ...wire.NackEntry) []byte {
	b := make([]byte, wire.KeyIDLen)
	b = binary.BigEndian.AppendUint64(b, session)
	b = binary.BigEndian.AppendUint64(b, counter)
	b = append(b, byte(count))
	for _, e := range entries {
		b = binary.BigEndian.AppendUint64(b, e.Block)
		b = append(b, e.Missing)
	}
	return b
}

func TestParseNackBodyBounds(t *testing.T) {
	atMax := nackEntries(wire.MaxNackEntries)
	overMax := nackEntries(wire.MaxNackEntries + 1)
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: accepted
	}{
		{"one entry", rawNackBody(1, wire.NackEntry{Block: 1, Missing: 1}), nil},
		{"entries at max", rawNackBody(len(atMax), atMax...), nil},
		{"entries over max", rawNackBody(len(overMax), overMax...), wire.ErrInvalid},
		{"no entries", rawNackBody(0), wire.ErrInvalid},
		{"block zero", rawNackBody(2, wire.NackEntry{Block: 1, Missing: 1}, wire.NackEntry{Block: 0, Missing: 1}), wire.ErrInvalid},
		{"missing zero", rawNackBody(2, wire.NackEntry{Block: 1, Missing: 0}, wire.NackEntry{Block: 2, Missing: 1}), wire.ErrInvalid},
		{"missing all", rawNackBody(1, wire.NackEntry{Block: 1, Missing: wire.MissingAll}), nil},
		{"count over entries", rawNackBody(2, wire.NackEntry{Block: 1, Missing: 1}), wire.ErrShort},
		{"count under entries", rawNackBody(1, wire.NackEntry{Block: 1, Missing: 1}, wire.NackEntry{Block: 2, Missing: 1}), wire.ErrTrailing},
		{"trailing byte", append(rawNackBody(1, wire.NackEntry{Block: 1, Missing: 1}), 0), wire.ErrTrailing},
		{"session zero", rawNackBodySC(0, 1, 1, wire.NackEntry{Block: 1, Missing: 1}), wire.ErrInvalid},
		{"counter zero", rawNackBodySC(1, 0, 1, wire.NackEntry{Block: 1, Missing: 1}), wire.ErrInvalid},
		{"counter at max", rawNackBodySC(^uint64(0), ^uint64(0), 1, wire.NackEntry{Block: 1, Missing: 1}), nil},
		{"key id only", make([]byte, wire.KeyIDLen), wire.ErrShort},
		{"no counter", make([]byte, wire.KeyIDLen+8), wire.ErrShort},
		{"no count", rawNackBodySC(1, 1, 1)[:wire.KeyIDLen+16], wire.ErrShort},
		{"empty", nil, wire.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n wire.Nack
			err := wire.ParseNackBody(tt.in, &n)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ParseNackBody(%x) = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			re, err := reencodeNackBody(&n)
			if err != nil || !bytes.Equal(re, tt.in) {
				t.Errorf("re-encoding = %x, %v, want %x, nil", re, err, tt.in)
			}
		})
	}
}

func TestNackBodyMalformed(t *testing.T) {
	b, err := wire.AppendNackBody(nil, sampleNack())
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if err := wire.ParseNackBody(b[:n:n], &wire.Nack{}); err == nil {
			t.Errorf("ParseNackBody(first %d of %d bytes) = nil, want an error", n, len(b))
		}
	}
	if err := wire.ParseNackBody(append(bytes.Clone(b), 0), &wire.Nack{}); !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("ParseNackBody(body and a byte) = %v, want %v", err, wire.ErrTrailing)
	}
	var n wire.Nack // reused, as a receive loop does
	mutations(b, func(name string, m []byte) {
		if err := wire.ParseNackBody(m, &n); err != nil {
			return
		}
		if re, err := reencodeNackBody(&n); err != nil || !bytes.Equal(re, m) {
			t.Errorf("%s: re-encoding %x = %x, %v, want the same bytes", name, m, re, err)
		}
	})
}

func TestNackHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		h    wire.NackHeader
		rest int
	}{
		{wire.NackHeader{}, wire.TagLen},
		{wire.NackHeader{Room: sampleRoom, Epoch: 2, Nonce: [wire.NonceXLen]byte{1, 2, 3, 23: 24}}, 100},
		{wire.NackHeader{Room: [wire.RoomIDLen]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Epoch: ^uint32(0),
			Nonce: [wire.NonceXLen]byte(bytes.Repeat([]byte{0xff}, wire.NonceXLen))}, wire.MaxPacket - wire.NackHeaderLen - wire.NonceXLen},
	}
	for _, tt := range tests {
		hdr := wire.AppendNackHeader(nil, tt.h)
		if len(hdr) != wire.NackHeaderLen+wire.NonceXLen {
			t.Errorf("len(AppendNackHeader) = %d, want %d", len(hdr), wire.NackHeaderLen+wire.NonceXLen)
		}
		rest := bytes.Repeat([]byte{0x5a}, tt.rest)
		pkt := append(hdr, rest...)
		got, err := wire.ParseNackHeader(pkt)
		if err != nil || got != tt.h {
			t.Errorf("ParseNackHeader(%.60x…) = %+v, %v, want %+v, nil", pkt, got, err, tt.h)
		}
		if re := append(wire.AppendNackHeader(nil, got), rest...); !bytes.Equal(re, pkt) {
			t.Errorf("re-encoding = %.60x…, want %.60x…", re, pkt)
		}
	}
}

func TestNackHeaderLayout(t *testing.T) {
	var nonce [wire.NonceXLen]byte
	for i := range nonce {
		nonce[i] = byte(0x40 + i)
	}
	h := wire.NackHeader{Room: sampleRoom, Epoch: 0x11121314, Nonce: nonce}
	want := []byte{'M', 'D', 5, wire.TypeNack, 1, 2, 3, 4, 5, 6, 7, 8,
		0x11, 0x12, 0x13, 0x14}
	want = append(want, nonce[:]...)
	if got := wire.AppendNackHeader(nil, h); !bytes.Equal(got, want) {
		t.Errorf("AppendNackHeader = %x, want %x", got, want)
	}
	if wire.NackHeaderLen != 16 {
		t.Errorf("NackHeaderLen = %d, want 16: the associated data ends where the nonce begins", wire.NackHeaderLen)
	}
}

func TestNackHeaderShort(t *testing.T) {
	pkt := sampleNackPacket()[:wire.NackHeaderLen+wire.NonceXLen+wire.TagLen]
	for n := range len(pkt) {
		if _, err := wire.ParseNackHeader(pkt[:n]); err == nil {
			t.Errorf("ParseNackHeader(first %d bytes) = nil, want an error", n)
		}
	}
	if _, err := wire.ParseNackHeader(pkt); err != nil {
		t.Errorf("ParseNackHeader(%d bytes) = %v, want nil", len(pkt), err)
	}
}

func TestNackHeaderMalformed(t *testing.T) {
	pkt := sampleNackPacket()
	mutations(pkt, func(name string, m []byte) {
		h, err := wire.ParseNackHeader(m)
		if err != nil {
			return
		}
		if re := append(wire.AppendNackHeader(nil, h), m[wire.NackHeaderLen+wire.NonceXLen:]...); !bytes.Equal(re, m) {
			t.Errorf("%s: re-encoding %x = %x, want the same bytes", name, m, re)
		}
	})
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
		Block:   5,
		Session: 0x0a0b0c0d0e0f1011,
		Group:   ap("239.255.78.9:4243"),
		MACSlot: 3,
		MACKey:  [32]byte{0: 0x5c, 31: 0x5d},
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
		&wire.Hello{Room: strings.Repeat("r", wire.MaxRoomName), Nick: strings.Repeat("n", wire.MaxNick), Resume: ^uint64(0), Cred: bytes.Repeat([]byte{0xc7}, wire.MaxCred)},
		&wire.Hello{Room: "lobby", Nick: "ann", Cred: []byte("token")},
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
		&wire.BatchFrame{Batch: sampleBatch()},
		&wire.BatchFrame{Batch: bytes.Repeat([]byte{0xcc}, wire.MaxBatch)},
		&wire.BatchFrame{Batch: []byte{}},
		&wire.Ack{Seq: 9, Loss: 25},
		&wire.Ack{Seq: ^uint64(0), Loss: ^uint16(0)},
		&wire.Ack{},
		&wire.Stream{On: true},
		&wire.Stream{On: true, Lossy: true},
		&wire.Stream{On: false},
		&wire.Seen{Seq: 12, Seen: 3, Of: 4},
		&wire.Seen{Seq: ^uint64(0), Seen: ^uint16(0), Of: ^uint16(0)},
		&wire.Rekey{Epoch: 1<<32 | 7, Key: [32]byte{1, 2, 3}},
	}
}

// frameEqual compares frames field by field; an empty and a nil slice
// are equal.
func frameEqual(a, b wire.Frame) bool {
	switch a := a.(type) {
	case *wire.Hello:
		b, ok := b.(*wire.Hello)
		return ok && a.Room == b.Room && a.Nick == b.Nick && a.Resume == b.Resume && bytes.Equal(a.Cred, b.Cred)
	case *wire.Welcome:
		b, ok := b.(*wire.Welcome)
		return ok && a.Room == b.Room && a.Epoch == b.Epoch && a.Key == b.Key && a.Next == b.Next &&
			a.Block == b.Block && a.Session == b.Session && a.Group == b.Group && slices.Equal(a.Members, b.Members)
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
	case *wire.BatchFrame:
		b, ok := b.(*wire.BatchFrame)
		return ok && bytes.Equal(a.Batch, b.Batch)
	case *wire.Ack:
		b, ok := b.(*wire.Ack)
		return ok && *a == *b
	case *wire.Stream:
		b, ok := b.(*wire.Stream)
		return ok && *a == *b
	case *wire.Seen:
		b, ok := b.(*wire.Seen)
		return ok && *a == *b
	case *wire.Rekey:
		b, ok := b.(*wire.Rekey)
		return ok && *a == *b
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
	case *wire.BatchFrame:
		return "batch"
	case *wire.Ack:
		return "ack"
	case *wire.Stream:
		return "stream"
	case *wire.Seen:
		return "seen"
	case *wire.Rekey:
		return "rekey"
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

// sampleBatch is a one-record batch with a stand-in signature.
func sampleBatch() []byte {
	b, err := wire.AppendBatchBody(nil, 5, sampleRecords()[:1])
	if err != nil {
		panic(err)
	}
	return append(b, fakeSig...)
}

func TestFrameLayout(t *testing.T) {
	welcome := []byte{0, 0, 0, 139, wire.FrameWelcome, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 0, 0, 0, 1}
	welcome = append(welcome, make([]byte, 31)...)
	welcome = append(welcome, 0x77, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 5, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 4, 239, 255, 78, 9, 0x10, 0x93,
		3, 0x5c)
	welcome = append(welcome, make([]byte, 30)...)
	welcome = append(welcome, 0x5d, 0, 2,
		1, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'n', 'n', 2, 0, 0, 0, 0, 0, 0, 0, 3, 'b', 'o', 'b')
	tests := []struct {
		f    wire.Frame
		want []byte
	}{
		{&wire.Say{ID: 0x01020304, Text: "hi"}, []byte{0, 0, 0, 9, wire.FrameSay, 1, 2, 3, 4, 0, 2, 'h', 'i'}},
		{sampleWelcome(), welcome},
		{&wire.Gone{From: 1, To: 0x0203}, []byte{0, 0, 0, 17, wire.FrameGone, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 3}},
		{&wire.BatchFrame{Batch: []byte{7, 8, 9}}, []byte{0, 0, 0, 4, wire.FrameBatch, 7, 8, 9}},
		{&wire.Ack{Seq: 0x0102030405060708, Loss: 0x0a0b}, []byte{0, 0, 0, 11, wire.FrameAck, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b}},
		{&wire.Stream{On: true}, []byte{0, 0, 0, 2, wire.FrameStream, 1}},
		{&wire.Stream{}, []byte{0, 0, 0, 2, wire.FrameStream, 0}},
		{&wire.Stream{On: true, Lossy: true}, []byte{0, 0, 0, 2, wire.FrameStream, 2}},
		{&wire.Seen{Seq: 3, Seen: 0x0102, Of: 0x0304}, []byte{0, 0, 0, 13, wire.FrameSeen, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		b, err := wire.AppendFrame(nil, tt.f)
		if err != nil || !bytes.Equal(b, tt.want) {
			t.Errorf("AppendFrame(%s) = %x, %v, want %x, nil", typeName(tt.f), b, err, tt.want)
		}
	}
}

func TestFrameNumbers(t *testing.T) {
	// ONLY APPEND: these numbers are on the wire.
	got := []int{wire.FrameHello, wire.FrameWelcome, wire.FrameRefuse, wire.FrameSay, wire.FrameSaid, wire.FrameFetch,
		wire.FrameGone, wire.FrameBatch, wire.FrameAck, wire.FrameStream, wire.FrameSeen, wire.FrameRekey}
	want := []int{1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13}
	if !slices.Equal(got, want) {
		t.Errorf("frame types = %v, want %v", got, want)
	}
	gotT := []int{wire.TypeAnnounce, wire.TypeShard, wire.TypeHeartbeat, wire.TypeNack}
	if wantT := []int{1, 3, 4, 5}; !slices.Equal(gotT, wantT) {
		t.Errorf("packet types = %v, want %v", gotT, wantT)
	}
}

func TestAppendFrameBounds(t *testing.T) {
	overNick := sampleWelcome()
	overNick.Members[1].Nick = strings.Repeat("n", wire.MaxNick+1)
	noGroup := sampleWelcome()
	noGroup.Group = netip.AddrPort{}
	tooMany := sampleWelcome()
	tooMany.Members = members(wire.MaxMembers + 1)
	noSession := sampleWelcome()
	noSession.Session = 0
	overSlot := sampleWelcome()
	overSlot.MACSlot = wire.MaxMACSlots
	long := strings.Repeat("x", wire.MaxText+1)
	tests := []struct {
		name    string
		f       wire.Frame
		wantErr error
	}{
		{"hello room", &wire.Hello{Room: strings.Repeat("r", wire.MaxRoomName+1)}, wire.ErrTooLong},
		{"hello nick", &wire.Hello{Nick: strings.Repeat("n", wire.MaxNick+1)}, wire.ErrTooLong},
		{"hello cred", &wire.Hello{Cred: make([]byte, wire.MaxCred+1)}, wire.ErrTooLong},
		{"welcome members", tooMany, wire.ErrTooLong},
		{"welcome nick", overNick, wire.ErrTooLong},
		{"welcome group", noGroup, wire.ErrInvalid},
		{"welcome session zero", noSession, wire.ErrInvalid},
		{"welcome MAC slot", overSlot, wire.ErrInvalid},
		{"refuse", &wire.Refuse{Reason: long}, wire.ErrTooLong},
		{"say", &wire.Say{Text: long}, wire.ErrTooLong},
		{"said", &wire.Said{Error: long}, wire.ErrTooLong},
		{"batch", &wire.BatchFrame{Batch: make([]byte, wire.MaxBatch+1)}, wire.ErrTooLong},
		{"gone empty", &wire.Gone{From: 5, To: 5}, wire.ErrInvalid},
		{"gone backwards", &wire.Gone{From: 5, To: 4}, wire.ErrInvalid},
		{"stream lossy off", &wire.Stream{Lossy: true}, wire.ErrInvalid},
		{"retired packet", []byte{1, 2, 3}, wire.ErrType},
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
	return rawWelcomeSession(1, wire.NoMACSlot, group, nicks...)
}

func rawWelcomeSession(session uint64, slot byte, group []byte, nicks ...int) []byte {
	b := rawFrame(wire.FrameWelcome, u(wire.RoomIDLen), u(8), u(32), u(8), u(8), binary.BigEndian.AppendUint64(nil, session), group, []byte{slot}, u(32), binary.BigEndian.AppendUint16(nil, uint16(len(nicks))))
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
		{"type after the last", []byte{wire.FrameRekey + 1}, wire.ErrType},
		{"rekey", rawFrame(wire.FrameRekey, u(8), make([]byte, 32)), nil},
		{"rekey short", rawFrame(wire.FrameRekey, u(8), make([]byte, 31)), wire.ErrShort},
		{"rekey trailing", rawFrame(wire.FrameRekey, u(8), make([]byte, 33)), wire.ErrTrailing},
		{"retired packet type", rawFrame(7, u(40)), wire.ErrType},
		{"hello at max", rawFrame(wire.FrameHello, str8(wire.MaxRoomName), str8(wire.MaxNick), u(8), str8(wire.MaxCred)), nil},
		{"hello room over max", rawFrame(wire.FrameHello, str8(wire.MaxRoomName+1), str8(1), u(8), str8(0)), wire.ErrTooLong},
		{"hello nick over max", rawFrame(wire.FrameHello, str8(1), str8(wire.MaxNick+1), u(8), str8(0)), wire.ErrTooLong},
		{"hello cred over max", rawFrame(wire.FrameHello, str8(1), str8(1), u(8), str8(wire.MaxCred+1)), wire.ErrTooLong},
		{"hello without cred", rawFrame(wire.FrameHello, str8(1), str8(1), u(8)), wire.ErrShort},
		{"hello trailing", rawFrame(wire.FrameHello, str8(1), str8(1), u(8), str8(1), u(1)), wire.ErrTrailing},
		{"welcome members at max", rawWelcome(group, maxMembers...), nil},
		{"welcome members over max", rawWelcome(group, overMembers...), wire.ErrTooLong},
		{"welcome nick at max", rawWelcome(group, wire.MaxNick), nil},
		{"welcome nick over max", rawWelcome(group, wire.MaxNick+1), wire.ErrTooLong},
		{"welcome v6 group", rawWelcome(v6addr([16]byte{0xff, 0x15, 15: 1}, 1)), nil},
		{"welcome v4-in-v6 group", rawWelcome(v6addr(netip.MustParseAddr("::ffff:239.0.0.1").As16(), 1)), wire.ErrInvalid},
		{"welcome trailing", append(rawWelcome(group, 1), 0), wire.ErrTrailing},
		{"welcome session zero", rawWelcomeSession(0, wire.NoMACSlot, group, 1), wire.ErrInvalid},
		{"welcome MAC slot 0", rawWelcomeSession(1, 0, group, 1), nil},
		{"welcome MAC slot at max", rawWelcomeSession(1, wire.MaxMACSlots-1, group, 1), nil},
		{"welcome MAC slot over max", rawWelcomeSession(1, wire.MaxMACSlots, group, 1), wire.ErrInvalid},
		{"welcome MAC slot 0xfe", rawWelcomeSession(1, 0xfe, group, 1), wire.ErrInvalid},
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
		// The Welcome before Block was added: its group and member count
		// are read as the block and too little is left for the session.
		{"welcome without block", rawFrame(wire.FrameWelcome, u(wire.RoomIDLen), u(8), u(32), u(8), group, u(2)), wire.ErrShort},
		// The Welcome before Session was added: its group and member count
		// are read as the session, and what follows is no address.
		{"welcome without session", rawFrame(wire.FrameWelcome, u(wire.RoomIDLen), u(8), u(32), u(8), u(8), group, u(2)), wire.ErrInvalid},
		{"gone", rawFrame(wire.FrameGone, u(8), []byte{0, 0, 0, 0, 0, 0, 0, 1}), nil},
		{"gone empty", rawFrame(wire.FrameGone, u(16)), wire.ErrInvalid},
		{"gone backwards", rawFrame(wire.FrameGone, []byte{0, 0, 0, 0, 0, 0, 0, 9}, []byte{0, 0, 0, 0, 0, 0, 0, 3}), wire.ErrInvalid},
		{"gone trailing", rawFrame(wire.FrameGone, u(8), []byte{0, 0, 0, 0, 0, 0, 0, 1}, u(1)), wire.ErrTrailing},
		{"gone short", rawFrame(wire.FrameGone, u(15)), wire.ErrShort},
		{"batch at max", rawFrame(wire.FrameBatch, u(wire.MaxBatch)), nil},
		{"batch over max", rawFrame(wire.FrameBatch, u(wire.MaxBatch+1)), wire.ErrTooLong},
		{"batch empty", rawFrame(wire.FrameBatch), nil},
		{"ack", rawFrame(wire.FrameAck, u(10)), nil},
		{"ack short", rawFrame(wire.FrameAck, u(9)), wire.ErrShort},
		{"ack trailing", rawFrame(wire.FrameAck, u(11)), wire.ErrTrailing},
		{"stream off", rawFrame(wire.FrameStream, []byte{0}), nil},
		{"stream on", rawFrame(wire.FrameStream, []byte{1}), nil},
		{"stream on for loss", rawFrame(wire.FrameStream, []byte{2}), nil},
		{"stream mode 3", rawFrame(wire.FrameStream, []byte{3}), wire.ErrInvalid},
		{"stream on=255", rawFrame(wire.FrameStream, []byte{0xff}), wire.ErrInvalid},
		{"stream short", rawFrame(wire.FrameStream), wire.ErrShort},
		{"stream trailing", rawFrame(wire.FrameStream, []byte{1, 0}), wire.ErrTrailing},
		{"seen", rawFrame(wire.FrameSeen, u(12)), nil},
		{"seen short", rawFrame(wire.FrameSeen, u(11)), wire.ErrShort},
		{"seen trailing", rawFrame(wire.FrameSeen, u(13)), wire.ErrTrailing},
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
			_, isBatch := f.(*wire.BatchFrame)
			for _, n := range cuts(len(body)) {
				// Any nonempty prefix of a batch frame is a shorter batch:
				// the frame carries it, the signature checks it.
				if isBatch && n > 0 {
					break
				}
				if _, err := wire.ParseFrame(body[:n:n]); err == nil {
					t.Errorf("ParseFrame(first %d of %d bytes) = nil, want an error", n, len(body))
				}
			}
			if !isBatch {
				if _, err := wire.ParseFrame(append(bytes.Clone(body), 0)); !errors.Is(err, wire.ErrTrailing) {
					t.Errorf("ParseFrame(frame and a byte) = %v, want %v", err, wire.ErrTrailing)
				}
			}
			// Every truncation of the stream fails, batches included.
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
