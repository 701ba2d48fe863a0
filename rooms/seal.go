package rooms

import (
	"crypto/cipher"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"meshd/rooms/wire"
)

// Epoch numbers a room key. The high 32 bits are the host's boot counter
// and the low 32 count rekeys within that boot, so epochs only grow, across
// restarts too, without a clock.
func Epoch(boot, rekey uint32) uint64 { return uint64(boot)<<32 | uint64(rekey) }

// epochKey is a room's key for one epoch. Each epoch's key is fresh from
// crypto/rand, so a packet counter that restarts with the key can never
// repeat a (key, nonce) pair, even after a crash that lost state.
type epochKey struct {
	epoch uint64
	key   [chacha20poly1305.KeySize]byte
	aead  cipher.AEAD
}

func newEpochKey(epoch uint64, key [chacha20poly1305.KeySize]byte) (*epochKey, error) {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("epoch key: %w", err)
	}
	return &epochKey{epoch: epoch, key: key, aead: aead}, nil
}

func nonce(counter uint64) [chacha20poly1305.NonceSize]byte {
	var n [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(n[4:], counter)
	return n
}

// errCounterExhausted stops a sender before its nonce could wrap.
var errCounterExhausted = errors.New("packet counter exhausted; the room needs a new epoch key")

// sealBatch builds one data packet: it appends the header and batch to
// buf[:0], signs header and batch with the host key, and seals batch and
// signature in place with the header as associated data.
func sealBatch(buf []byte, id *Identity, k *epochKey, room [wire.RoomIDLen]byte, counter, first uint64, recs []wire.Record) ([]byte, error) {
	if counter == ^uint64(0) {
		return nil, errCounterExhausted
	}
	b := wire.AppendDataHeader(buf[:0], wire.DataHeader{Room: room, Epoch: k.epoch, Counter: counter})
	b, err := wire.AppendBatchBody(b, first, recs)
	if err != nil {
		return nil, err
	}
	sig, err := id.Key.Sign(nil, b, dataOpts)
	if err != nil {
		return nil, fmt.Errorf("sign batch: %w", err)
	}
	b = append(b, sig...)
	n := nonce(counter)
	hdr := b[:wire.DataHeaderLen]
	return k.aead.Seal(hdr, n[:], b[wire.DataHeaderLen:], hdr), nil
}

var (
	errAuth   = errors.New("not sealed under the room key")
	errSigned = fmt.Errorf("batch: %w", ErrBadSignature)
)

// openBatch opens a data packet whose header h was parsed from pkt, into
// scratch, and checks the host's signature. The batch's records are decoded
// into recs[:0] and alias nothing in scratch but their strings, which are
// copies.
func openBatch(scratch []byte, k *epochKey, hostKey ed25519.PublicKey, pkt []byte, recs []wire.Record) (wire.Batch, []byte, error) {
	n := nonce(binary.BigEndian.Uint64(pkt[wire.DataHeaderLen-8:]))
	hdr := pkt[:wire.DataHeaderLen]
	out, err := k.aead.Open(append(scratch[:0], hdr...), n[:], pkt[wire.DataHeaderLen:], hdr)
	if err != nil {
		return wire.Batch{}, out, errAuth
	}
	bt, err := wire.ParseBatch(out[wire.DataHeaderLen:], recs)
	if err != nil {
		return bt, out, err
	}
	signed := out[:wire.DataHeaderLen+len(bt.Signed)]
	if ed25519.VerifyWithOptions(hostKey, signed, bt.Sig[:], dataOpts) != nil {
		return bt, out, errSigned
	}
	return bt, out, nil
}
