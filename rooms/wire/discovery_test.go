package wire_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"meshd/rooms/wire"
)

func sampleQuery() wire.Query {
	return wire.Query{Nonce: 0x0a0b0c0d0e0f1011, TTL: 4, HasKey: true, HostKey: hostKey(), Room: "lobby"}
}

func TestQueryRoundTrip(t *testing.T) {
	for _, q := range []wire.Query{
		sampleQuery(),
		{Nonce: 1, TTL: 1, Room: "r"},
		{Nonce: ^uint64(0), TTL: 255, Room: strings.Repeat("x", wire.MaxRoomName)},
	} {
		b, err := wire.AppendQuery(nil, &q)
		if err != nil {
			t.Fatalf("AppendQuery(%+v) = %v", q, err)
		}
		if len(b) != wire.QueryLen {
			t.Fatalf("len(AppendQuery(%+v)) = %d, want %d", q, len(b), wire.QueryLen)
		}
		got, err := wire.ParseQuery(b)
		if err != nil {
			t.Fatalf("ParseQuery(AppendQuery(%+v)) = %v", q, err)
		}
		if got != q {
			t.Fatalf("ParseQuery(AppendQuery(%+v)) = %+v", q, got)
		}
	}
}

func TestQueryRejects(t *testing.T) {
	q := sampleQuery()
	good, _ := wire.AppendQuery(nil, &q)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"short":       good[:wire.QueryLen-1],
		"long":        append(bytes.Clone(good), 0),
		"padding":     mod(func(b []byte) []byte { b[wire.QueryLen-1] = 1; return b }),
		"ttl 0":       mod(func(b []byte) []byte { b[12] = 0; return b }),
		"flags":       mod(func(b []byte) []byte { b[13] = 3; return b }),
		"key no flag": mod(func(b []byte) []byte { b[13] = 0; return b }),
		"empty name":  mod(func(b []byte) []byte { b[46] = 0; return b }),
		"long name":   mod(func(b []byte) []byte { b[46] = wire.MaxRoomName + 1; return b }),
		"type":        mod(func(b []byte) []byte { b[3] = wire.TypeAnnounce; return b }),
	} {
		if _, err := wire.ParseQuery(b); err == nil {
			t.Errorf("ParseQuery(%s) = nil error, want one", name)
		}
	}
	if _, err := wire.AppendQuery(nil, &wire.Query{TTL: 1, Room: strings.Repeat("x", wire.MaxRoomName+1)}); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("AppendQuery(long name) = %v, want ErrTooLong", err)
	}
}

// The whole point of padding: the largest announcement fits three queries.
func TestAnswerWithinThreeQueries(t *testing.T) {
	a := wire.Announce{
		HostKey: hostKey(),
		Group:   ap("[ff15::1]:7703"),
		Room:    strings.Repeat("r", wire.MaxRoomName),
	}
	for range wire.MaxAddrs {
		a.Addrs = append(a.Addrs, netip.MustParseAddrPort("[fd00::1]:7702"))
	}
	_, pkt := encodeAnnounce(t, &a)
	if len(pkt) != wire.MaxAnnounceLen {
		t.Fatalf("largest announcement is %d bytes, MaxAnnounceLen says %d", len(pkt), wire.MaxAnnounceLen)
	}
	if wire.MaxAnnounceLen > 3*wire.QueryLen {
		t.Fatalf("MaxAnnounceLen %d > 3 × QueryLen %d", wire.MaxAnnounceLen, wire.QueryLen)
	}
}

func TestRelayRoundTrip(t *testing.T) {
	a := sampleAnnounce()
	_, ann := encodeAnnounce(t, &a)
	b, err := wire.AppendRelay(nil, 3, ann)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := wire.ParseRelay(b)
	if err != nil {
		t.Fatalf("ParseRelay = %v", err)
	}
	if rl.Hops != 3 || !bytes.Equal(rl.Announce, ann) {
		t.Fatalf("ParseRelay = %+v, want hops 3 and the announcement", rl)
	}
	for name, bad := range map[string][]byte{
		"hops 0":    append([]byte{'M', 'D', wire.Version, wire.TypeRelay, 0}, ann...),
		"hops high": append([]byte{'M', 'D', wire.Version, wire.TypeRelay, wire.MaxHops + 1}, ann...),
		"bad inner": append([]byte{'M', 'D', wire.Version, wire.TypeRelay, 1}, ann[:len(ann)-1]...),
		"short":     {'M', 'D', wire.Version, wire.TypeRelay},
	} {
		if _, err := wire.ParseRelay(bad); err == nil {
			t.Errorf("ParseRelay(%s) = nil error", name)
		}
	}
	if _, err := wire.AppendRelay(nil, 1, b); err == nil {
		t.Errorf("AppendRelay of a relay packet = nil error; relays must carry the original announcement")
	}
}

func FuzzParseQuery(f *testing.F) {
	q := sampleQuery()
	b, _ := wire.AppendQuery(nil, &q)
	f.Add(b)
	f.Add(make([]byte, wire.QueryLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := wire.ParseQuery(b)
		if err != nil {
			return
		}
		re, err := wire.AppendQuery(nil, &q)
		if err != nil {
			t.Fatalf("AppendQuery(ParseQuery(%x)) = %v", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}

func FuzzParseRelay(f *testing.F) {
	a := sampleAnnounce()
	_, ann := encodeAnnounce(f, &a)
	b, _ := wire.AppendRelay(nil, 1, ann)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		rl, err := wire.ParseRelay(b)
		if err != nil {
			return
		}
		re, err := wire.AppendRelay(nil, rl.Hops, rl.Announce)
		if err != nil {
			t.Fatalf("AppendRelay(ParseRelay(%x)) = %v", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}
