package rooms

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"meshd/rooms/secure"
)

// Identity is this daemon's Ed25519 key, and the session key it signed at
// this start, which proves the identity in joins, as host and as member.
type Identity struct {
	Key    ed25519.PrivateKey
	Pub    ed25519.PublicKey
	static *secure.Static
}

// NewIdentity wraps a key and makes this start's session key.
func NewIdentity(key ed25519.PrivateKey) (*Identity, error) {
	st, err := secure.NewStatic(key)
	if err != nil {
		return nil, err
	}
	return &Identity{
		Key:    key,
		Pub:    key.Public().(ed25519.PublicKey),
		static: st,
	}, nil
}

// Fingerprint is the short form of the identity's public key.
func (id *Identity) Fingerprint() string { return Fingerprint(id.Pub) }

// ErrHostKeyMismatch means the host that answered a join is not the key
// the room was announced under.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// hostKeyErr names both keys of a mismatch by fingerprint, which is how
// users know them; other errors pass through.
func hostKeyErr(err error) error {
	if mm, ok := errors.AsType[*secure.KeyMismatchError](err); ok {
		return fmt.Errorf("%w: room announced by %s, answered by %s", ErrHostKeyMismatch, Fingerprint(mm.Want), Fingerprint(mm.Got))
	}
	return err
}
