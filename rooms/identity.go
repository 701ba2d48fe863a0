package rooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Identity is this daemon's Ed25519 key and the self-signed TLS
// certificate that proves it in joins, as host and as member.
type Identity struct {
	Key  ed25519.PrivateKey
	Pub  ed25519.PublicKey
	cert tls.Certificate
}

// NewIdentity wraps a key. The certificate's validity window is wide on
// purpose: peers check the key, never the dates, because routers boot
// without a clock.
func NewIdentity(key ed25519.PrivateKey) (*Identity, error) {
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &Identity{
		Key:  key,
		Pub:  pub,
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}, nil
}

// Fingerprint is the short form of the identity's public key.
func (id *Identity) Fingerprint() string { return Fingerprint(id.Pub) }

// ErrHostKeyMismatch means the host that answered a join is not the key
// the room was announced under.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// peerKey returns the Ed25519 key of the certificate a peer presented.
func peerKey(cs tls.ConnectionState) (ed25519.PublicKey, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("peer sent no certificate")
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("peer certificate key is not Ed25519")
	}
	return pub, nil
}

// serverTLS is the host's side of a join: it proves the identity and
// demands a certificate from the member, whose key is its identity.
func (id *Identity) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{"meshd/1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := peerKey(cs)
			return err
		},
	}
}

// clientTLS is the member's side: the host must hold hostKey. Chain
// verification is off because there is no CA; the key comparison in
// VerifyConnection is the whole check.
func (id *Identity) clientTLS(hostKey ed25519.PublicKey) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.cert},
		InsecureSkipVerify: true,
		NextProtos:         []string{"meshd/1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			pub, err := peerKey(cs)
			if err != nil {
				return err
			}
			if !pub.Equal(hostKey) {
				return fmt.Errorf("%w: room announced by %s, answered by %s", ErrHostKeyMismatch, Fingerprint(hostKey), Fingerprint(pub))
			}
			return nil
		},
	}
}
