// Package secure is the encrypted, mutually authenticated session a member
// holds to a room's host: Noise_XX_25519_ChaChaPoly_SHA256 over TCP, each
// side's X25519 static key signed by its Ed25519 identity.
//
// It replaces TLS 1.3 with self-signed certificates, which did the same job
// with X.509 and crypto/tls: about 2 MB of a router build for a CA-less
// key comparison. The Noise framework (github.com/flynn/noise) carries the
// handshake; this package adds the identity binding, the record layer and a
// net.Conn, so the session framing above it is unchanged.
package secure

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/flynn/noise"
)

const (
	// prologue is mixed into the handshake hash, so a peer speaking
	// another protocol or version fails the handshake rather than
	// misreading it. Its version follows wire.Version (v5 since sealed
	// packets carry a room tag and blocks' batches of one sender no
	// sender indexes): a member must learn of another version at its
	// handshake, not from a room whose packets it cannot read.
	prologue = "meshd session v5"
	// staticContext is the Ed25519ctx context of the signature over a
	// static key: it cannot pass for an announcement or a batch.
	staticContext = "meshd session static v1"

	// payloadLen is an identity payload: Ed25519 key and signature.
	payloadLen = ed25519.PublicKeySize + ed25519.SignatureSize
	// maxHandshakeMsg bounds a handshake message; the largest, XX's second
	// (e, encrypted s, encrypted payload), is 32+48+112 = 192 bytes.
	maxHandshakeMsg = 256

	// MaxRecord is the most plaintext one record carries; a Write of more
	// is split.
	MaxRecord = 16 << 10
	tagLen    = 16
	hdrLen    = 2
	maxSealed = MaxRecord + tagLen
)

// Static is this daemon's Noise static key pair, made fresh at each start
// and signed by its Ed25519 identity, so a peer learns the identity
// through the handshake and the identity key never touches the DH.
type Static struct {
	id  ed25519.PublicKey
	key *ecdh.PrivateKey
	sig []byte
}

// NewStatic makes a static key pair and signs it with id.
func NewStatic(id ed25519.PrivateKey) (*Static, error) {
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	sig, err := id.Sign(nil, key.PublicKey().Bytes(), &ed25519.Options{Context: staticContext})
	if err != nil {
		return nil, fmt.Errorf("sign session key: %w", err)
	}
	return &Static{id: id.Public().(ed25519.PublicKey), key: key, sig: sig}, nil
}

func (s *Static) payload() []byte {
	return append(slices.Clip(s.id), s.sig...)
}

// peerIdentity checks a peer's payload: an Ed25519 key whose signature
// covers the static key the peer proved it holds in the handshake.
func peerIdentity(payload, static []byte) (ed25519.PublicKey, error) {
	if len(payload) != payloadLen {
		return nil, fmt.Errorf("%w: identity payload of %d bytes", ErrHandshake, len(payload))
	}
	pub := ed25519.PublicKey(slices.Clone(payload[:ed25519.PublicKeySize]))
	if err := ed25519.VerifyWithOptions(pub, static, payload[ed25519.PublicKeySize:], &ed25519.Options{Context: staticContext}); err != nil {
		return nil, fmt.Errorf("%w: session key not signed by the identity it names", ErrHandshake)
	}
	return pub, nil
}

var (
	// ErrHandshake means the peer did not complete a valid handshake.
	ErrHandshake = errors.New("session handshake failed")
	// ErrTampered means a record failed authentication, or announced a
	// length no honest peer sends: the connection is closed.
	ErrTampered = errors.New("session record failed authentication")
)

// KeyMismatchError means the host proved an identity other than the one
// the member expected.
type KeyMismatchError struct {
	Want, Got ed25519.PublicKey
}

func (e *KeyMismatchError) Error() string { return "host key mismatch" }

// Config is one side's part in a session.
type Config struct {
	Static *Static
	// Tampered is called once for a record that fails authentication,
	// just before the connection is closed; nil means no one counts.
	Tampered func()
}

// Client runs the member's side of the handshake over raw and returns the
// session. The host must prove hostKey; the member reveals its own
// identity only after checking that, so a stranger answering a room's
// address learns nothing about who joins. Cancelling ctx aborts the
// handshake; raw's deadlines apply as set.
func Client(ctx context.Context, raw net.Conn, cfg Config, hostKey ed25519.PublicKey) (*Conn, error) {
	hs, d, err := newHandshake(cfg.Static, true)
	if err != nil {
		return nil, err
	}
	defer d.forget()
	var c *Conn
	err = interruptible(ctx, raw, func() error {
		msg, _, _, err := hs.WriteMessage(nil, nil)
		if err != nil {
			return err
		}
		if err := writeMsg(raw, msg); err != nil {
			return err
		}
		msg, err = readMsg(raw)
		if err != nil {
			return err
		}
		payload, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil {
			// Message 2 is the first the prologue authenticates: a host
			// of another protocol version fails here, as does tampering
			// on the way. The version is the likelier, and the one the
			// user can act on.
			return fmt.Errorf("%w (the host may run a different meshd version; this one speaks %q): %w", ErrHandshake, prologue, err)
		}
		pub, err := peerIdentity(payload, hs.PeerStatic())
		if err != nil {
			return err
		}
		if !pub.Equal(hostKey) {
			return &KeyMismatchError{Want: hostKey, Got: pub}
		}
		msg, tx, rx, err := hs.WriteMessage(nil, cfg.Static.payload())
		if err != nil {
			return err
		}
		if err := writeMsg(raw, msg); err != nil {
			return err
		}
		c = newConn(raw, tx, rx, pub, hs.ChannelBinding(), cfg.Tampered)
		return nil
	})
	if err != nil {
		// A handshake cut short by ctx may have completed: the
		// connection's deadline is being moved, so it is not usable.
		return nil, err
	}
	return c, nil
}

// Server runs the host's side of the handshake over raw and returns the
// session, whose PeerKey is the member's identity.
func Server(ctx context.Context, raw net.Conn, cfg Config) (*Conn, error) {
	hs, d, err := newHandshake(cfg.Static, false)
	if err != nil {
		return nil, err
	}
	defer d.forget()
	var c *Conn
	err = interruptible(ctx, raw, func() error {
		msg, err := readMsg(raw)
		if err != nil {
			return err
		}
		payload, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		if len(payload) != 0 {
			return fmt.Errorf("%w: payload in the first message", ErrHandshake)
		}
		msg, _, _, err = hs.WriteMessage(nil, cfg.Static.payload())
		if err != nil {
			return err
		}
		if err := writeMsg(raw, msg); err != nil {
			return err
		}
		msg, err = readMsg(raw)
		if err != nil {
			return err
		}
		payload, rx, tx, err := hs.ReadMessage(nil, msg)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		pub, err := peerIdentity(payload, hs.PeerStatic())
		if err != nil {
			return err
		}
		c = newConn(raw, tx, rx, pub, hs.ChannelBinding(), cfg.Tampered)
		return nil
	})
	if err != nil {
		// A handshake cut short by ctx may have completed: the
		// connection's deadline is being moved, so it is not usable.
		return nil, err
	}
	return c, nil
}

// newHandshake returns a handshake with st as its static key, and its DH
// function, whose keys the caller forgets once the handshake is done
// (dh.forget).
func newHandshake(st *Static, initiator bool) (*noise.HandshakeState, *dh, error) {
	d := &dh{keys: []*ecdh.PrivateKey{st.key}}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   newCipherSuite(d),
		Pattern:       noise.HandshakeXX,
		Initiator:     initiator,
		Prologue:      []byte(prologue),
		StaticKeypair: dhKey(st.key),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("session handshake: %w", err)
	}
	return hs, d, nil
}

// interruptible runs a handshake, ending it when ctx does by moving raw's
// deadline into the past.
func interruptible(ctx context.Context, raw net.Conn, run func() error) error {
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	err := run()
	if !stop() && ctx.Err() != nil {
		// The deadline is being moved: the connection is unusable even if
		// the handshake got through.
		return fmt.Errorf("session handshake: %w", ctx.Err())
	}
	return err
}

// tlsHandshake, then major version 3, opens the ClientHello that a member
// from before Noise sessions sends: too long for a handshake message, but
// worth telling apart from garbage in the host's log, since daemons on a
// mesh are upgraded one at a time. (Such a host closes the connection on
// message 1 without a word, so the member sees only EOF.)
const tlsHandshake = 0x16

// Handshake messages travel as a 2-byte big-endian length and the message.
func writeMsg(w io.Writer, msg []byte) error {
	b := make([]byte, hdrLen, hdrLen+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	if _, err := w.Write(append(b, msg...)); err != nil {
		return fmt.Errorf("session handshake: %w", err)
	}
	return nil
}

func readMsg(r io.Reader) ([]byte, error) {
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("session handshake: %w", err)
	}
	if hdr[0] == tlsHandshake && hdr[1] == 3 {
		return nil, fmt.Errorf("%w: the peer speaks TLS, as meshd did before its sessions used Noise; both ends need a meshd with Noise sessions", ErrHandshake)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 || n > maxHandshakeMsg {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrHandshake, n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("session handshake: %w", err)
	}
	return msg, nil
}
