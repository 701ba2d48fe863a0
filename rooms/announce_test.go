package rooms

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"meshd/rooms/wire"
)

func testAnnounce(room string, serial uint64) *wire.Announce {
	return &wire.Announce{
		Serial:   serial,
		Lifetime: 60,
		Group:    netip.MustParseAddrPort("239.255.78.9:4243"),
		Room:     room,
		Addrs:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:4244"), netip.MustParseAddrPort("[fd00::1]:4244")},
	}
}

func signTestAnnounce(t testing.TB, id *Identity, a *wire.Announce) []byte {
	t.Helper()
	b, err := SignAnnounce(id, a)
	if err != nil {
		t.Fatalf("SignAnnounce(%+v) = %v, want nil", a, err)
	}
	return b
}

func TestSignVerifyAnnounce(t *testing.T) {
	id := newTestIdentity(t)
	a := testAnnounce("lobby", 5)
	a.HostKey = [32]byte{1, 2, 3} // SignAnnounce puts in the signer's key
	pkt := signTestAnnounce(t, id, a)
	got, err := VerifyAnnounce(pkt)
	if err != nil {
		t.Fatalf("VerifyAnnounce(SignAnnounce(a)) = %v, want nil", err)
	}
	if !bytes.Equal(got.HostKey[:], id.Pub) {
		t.Errorf("HostKey = %x, want the signer's %x", got.HostKey, id.Pub)
	}
	if got.Serial != a.Serial || got.Room != a.Room || got.Lifetime != a.Lifetime || got.Group != a.Group || !slices.Equal(got.Addrs, a.Addrs) {
		t.Errorf("VerifyAnnounce(SignAnnounce(a)) = %+v, want %+v", got, a)
	}
}

func TestSignAnnounceRejectsInvalid(t *testing.T) {
	a := testAnnounce("lobby", 1)
	a.Addrs = nil
	if b, err := SignAnnounce(newTestIdentity(t), a); err == nil {
		t.Errorf("SignAnnounce(no addresses) = %x, nil, want an error", b)
	}
}

func TestVerifyAnnounceRejectsTampering(t *testing.T) {
	pkt := signTestAnnounce(t, newTestIdentity(t), testAnnounce("lobby", 5))
	for i := range pkt {
		for _, x := range []byte{0x01, 0xff} {
			m := bytes.Clone(pkt)
			m[i] ^= x
			if _, err := VerifyAnnounce(m); err == nil {
				t.Errorf("VerifyAnnounce(byte %d ^ %#x) = nil, want an error", i, x)
			}
		}
	}
	for n := range len(pkt) {
		if _, err := VerifyAnnounce(pkt[:n:n]); err == nil {
			t.Errorf("VerifyAnnounce(first %d of %d bytes) = nil, want an error", n, len(pkt))
		}
	}
	for _, tail := range []byte{0, 0xff} {
		if _, err := VerifyAnnounce(append(bytes.Clone(pkt), tail)); err == nil {
			t.Errorf("VerifyAnnounce(packet and %#x) = nil, want an error", tail)
		}
	}
	if _, err := VerifyAnnounce(pkt); err != nil {
		t.Errorf("VerifyAnnounce(original) = %v after the tampering, want nil", err)
	}
}

func TestVerifyAnnounceWrongSigner(t *testing.T) {
	host, other := newTestIdentity(t), newTestIdentity(t)
	a := testAnnounce("lobby", 5)
	copy(a.HostKey[:], host.Pub)
	body, err := wire.AppendAnnounceBody(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(id *Identity, opts crypto.SignerOpts) []byte {
		sig, err := id.Key.Sign(nil, body, opts)
		if err != nil {
			t.Fatal(err)
		}
		return append(bytes.Clone(body), sig...)
	}
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"other key", sign(other, announceOpts)},
		{"batch context", sign(host, batchOpts([8]byte{}))},
		{"no context", sign(host, crypto.Hash(0))},
		{"empty context", sign(host, &ed25519.Options{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyAnnounce(tt.pkt); !errors.Is(err, ErrBadSignature) {
				t.Errorf("VerifyAnnounce = %v, want %v", err, ErrBadSignature)
			}
		})
	}
	if _, err := VerifyAnnounce(sign(host, announceOpts)); err != nil {
		t.Errorf("VerifyAnnounce(signed by the host) = %v, want nil", err)
	}
}
