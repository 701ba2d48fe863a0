package secure

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/flynn/noise"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The vectors in docs/PROTOCOL.md's appendix, "Session": the identity
// payload of a static key, and the first two records of a direction.
func TestVectors(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	id := ed25519.NewKeyFromSeed(seed)
	priv, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x11}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := id.Sign(nil, priv.PublicKey().Bytes(), &ed25519.Options{Context: staticContext})
	if err != nil {
		t.Fatal(err)
	}
	st := &Static{id: id.Public().(ed25519.PublicKey), key: priv, sig: sig}
	static := priv.PublicKey().Bytes()
	payload := st.payload()
	if _, err := peerIdentity(payload, static); err != nil {
		t.Fatal(err)
	}

	var key [32]byte
	for i := range key {
		key[i] = byte(i)
	}
	bc := &bufConn{}
	c := newConn(bc, noise.UnsafeNewCipherState(testSuite, key, 0), nil, nil, nil, nil)
	ack := unhex(t, "0000000b0a000000000000002a0032")
	stream := unhex(t, "000000020b01")
	c.Write(ack)
	r0 := bytes.Clone(bc.w.Bytes())
	bc.w.Reset()
	c.Write(stream)
	r1 := bc.w.Bytes()

	for _, v := range []struct {
		name      string
		got, want []byte
	}{
		{"static", static, unhex(t, wantStatic)},
		{"payload", payload, unhex(t, wantPayload)},
		{"record 0", r0, unhex(t, wantRecord0)},
		{"record 1", r1, unhex(t, wantRecord1)},
	} {
		if !bytes.Equal(v.got, v.want) {
			t.Errorf("%s = %x, want %x (docs/PROTOCOL.md)", v.name, v.got, v.want)
		}
	}
}

const (
	wantStatic  = "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13"
	wantPayload = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8" +
		"744ea1d7ec85c88dd2ea05c3ed4af0665049eb7a856db3b4dd75deb4f845dd5c" +
		"637b7b350f775ca352d09bf952e98ef5ec1a42807fdb747b3f6968b4d2f8ef0b"
	wantRecord0 = "001f 18b8423aa7e6a6d113615c6185437c7caaa9d016b68ee35313d28d1c32feba"
	wantRecord1 = "0016 9f57f35dbe2b2ba29df54b070dbfb60c08d91a5f4fa7"
)
