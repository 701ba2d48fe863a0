package secure

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/flynn/noise"
)

// dh is Noise's 25519 DH function for one handshake, holding its private
// keys parsed. noise.DH25519 goes through curve25519.X25519, which parses
// the private key for every DH, and parsing an X25519 key in crypto/ecdh
// computes its public point: a second scalar multiplication each time.
// Keeping the static and ephemeral keys parsed halves a handshake's curve
// work, the bulk of its cost.
type dh struct {
	keys []*ecdh.PrivateKey
}

func newCipherSuite(d noise.DHFunc) noise.CipherSuite {
	return noise.NewCipherSuite(d, noise.CipherChaChaPoly, noise.HashSHA256)
}

func (d *dh) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	k, err := ecdh.X25519().GenerateKey(rng)
	if err != nil {
		return noise.DHKey{}, err
	}
	d.keys = append(d.keys, k)
	return dhKey(k), nil
}

func dhKey(k *ecdh.PrivateKey) noise.DHKey {
	return noise.DHKey{Private: k.Bytes(), Public: k.PublicKey().Bytes()}
}

func (d *dh) DH(priv, pub []byte) ([]byte, error) {
	var k *ecdh.PrivateKey
	for _, c := range d.keys {
		if subtle.ConstantTimeCompare(c.Bytes(), priv) == 1 {
			k = c
		}
	}
	if k == nil {
		var err error
		if k, err = ecdh.X25519().NewPrivateKey(priv); err != nil {
			return nil, err
		}
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	out, err := k.ECDH(p)
	if err != nil {
		// A low-order point: the peer chose a key that makes the shared
		// secret zero.
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return out, nil
}

// forget drops the keys once the handshake is over: the session's cipher
// states keep their suite, and with it this dh, for the session's
// lifetime, and an ephemeral private key kept that long would undo the
// forward secrecy it is for (and cost a busy host some 200 bytes a
// session).
func (d *dh) forget() { d.keys = nil }

func (d *dh) DHLen() int     { return 32 }
func (d *dh) DHName() string { return "25519" }
