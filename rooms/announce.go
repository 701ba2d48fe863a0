package rooms

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"meshd/rooms/wire"
)

// Signature contexts (Ed25519ctx, RFC 8032) keep a signature made for one
// purpose from being valid for another, including the session key's
// (rooms/secure), which the same key signs. Batches have theirs in seal.go.
var announceOpts = &ed25519.Options{Context: "meshd announce v1"}

// ErrBadSignature means a packet's signature does not verify.
var ErrBadSignature = errors.New("bad signature")

// SignAnnounce encodes and signs a; a.HostKey must be id's key.
func SignAnnounce(id *Identity, a *wire.Announce) ([]byte, error) {
	copy(a.HostKey[:], id.Pub)
	b, err := wire.AppendAnnounceBody(make([]byte, 0, 256), a)
	if err != nil {
		return nil, fmt.Errorf("encode announcement: %w", err)
	}
	sig, err := id.Key.Sign(nil, b, announceOpts)
	if err != nil {
		return nil, fmt.Errorf("sign announcement: %w", err)
	}
	return append(b, sig...), nil
}

// VerifyAnnounce decodes an announcement and checks that its host key
// signed exactly these bytes.
func VerifyAnnounce(b []byte) (wire.Announce, error) {
	a, err := wire.ParseAnnounce(b)
	if err != nil {
		return a, err
	}
	if err := ed25519.VerifyWithOptions(a.HostKey[:], a.Signed, a.Sig[:], announceOpts); err != nil {
		return a, fmt.Errorf("announcement of %q: %w", a.Room, ErrBadSignature)
	}
	return a, nil
}
