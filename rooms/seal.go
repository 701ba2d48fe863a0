package rooms

import (
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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
// crypto/rand, so block numbers and heartbeat counters that restart with
// the key can never repeat a (key, nonce) pair, even after a crash that
// lost state.
type epochKey struct {
	epoch uint64
	key   [chacha20poly1305.KeySize]byte
	aead  cipher.AEAD // the host's packets, nonces from their headers (nonce)
	nack  cipher.AEAD // members' NACKs, random nonces, under a derived key
}

func newEpochKey(epoch uint64, key [chacha20poly1305.KeySize]byte) (*epochKey, error) {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("epoch key: %w", err)
	}
	// Members share the key but not a counter, so their packets use
	// random 192-bit nonces under a key of their own.
	nk, err := hkdf.Key(sha256.New, key[:], nil, "meshd nack v1", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("nack key: %w", err)
	}
	nack, err := chacha20poly1305.NewX(nk)
	if err != nil {
		return nil, fmt.Errorf("nack key: %w", err)
	}
	return &epochKey{epoch: epoch, key: key, aead: aead, nack: nack}, nil
}

// wireEpoch is the half of the epoch that NACKs carry (wire.NackHeader).
func (k *epochKey) wireEpoch() uint32 { return uint32(k.epoch) }

// sealedEpoch is the byte of the epoch that shards and heartbeats carry
// (wire.SealedHeader).
func (k *epochKey) sealedEpoch() uint8 { return uint8(k.epoch) }

// nonceBuf holds the nonce of one Seal or Open. The AEAD takes it through
// an interface, so a nonce on the stack would escape to the heap on every
// packet; senders and receivers keep one beside their other scratch space.
type nonceBuf [chacha20poly1305.NonceSize]byte

// nonce writes into nb, and returns, the nonce of a packet of type typ
// numbered n: typ, three zero bytes, then n as a big-endian uint64. The
// type keeps shards' and heartbeats' numbers apart; a shard's n is its
// block and index (shardNonceNo), a heartbeat's its counter. No nonce
// travels: each is rebuilt from the associated data.
//
// Why a shard's nonce may repeat: the host seals shard i of block b under
// one key only ever as the same bytes. A block is numbered once per key,
// its shards are coded once, all its parity included, when it is sent,
// and its k and sent never change, so every repair of a shard seals the
// same plaintext with the same associated data under the same nonce: a
// byte-identical packet, which tells an observer nothing new (it could
// have copied the first). Sealing anything else under (b, i) would be
// ChaCha20-Poly1305's nonce reuse: sendShardLocked takes shard i of the
// block it numbers b, under the lock that codes it.
func nonce(nb *nonceBuf, typ byte, n uint64) []byte {
	*nb = nonceBuf{}
	nb[0] = typ
	binary.BigEndian.PutUint64(nb[4:], n)
	return nb[:]
}

// shardNonceNo is a shard's number in its nonce: its block, then its index.
func shardNonceNo(si wire.ShardInfo) uint64 { return si.Block<<8 | uint64(si.Index) }

// errCounterExhausted stops a sender before a block number or heartbeat
// counter could wrap; the room needs a new epoch key first, and the host
// rekeys long before (rekeyPackets).
var errCounterExhausted = errors.New("block number or heartbeat counter exhausted; the room needs a new epoch key")

// sealShard appends to buf[:0] a shard packet: the headers in clear, as
// associated data, and the shard sealed under the nonce of its block and
// index.
func sealShard(buf []byte, nb *nonceBuf, k *epochKey, room wire.RoomTag, si wire.ShardInfo, shard []byte) ([]byte, error) {
	if si.Block == 0 || si.Block > wire.MaxBlockNo {
		return nil, errCounterExhausted
	}
	b := wire.AppendShardHeader(buf[:0], wire.SealedHeader{Room: room, Epoch: k.sealedEpoch()}, si)
	return k.aead.Seal(b, nonce(nb, wire.TypeShard, shardNonceNo(si)), shard, b), nil
}

// sealHeartbeat appends to buf[:0] a sealed heartbeat packet. counter must
// be higher than that of the epoch's heartbeats before it.
func sealHeartbeat(buf []byte, nb *nonceBuf, k *epochKey, room wire.RoomTag, counter uint64, hb wire.Heartbeat) ([]byte, error) {
	if counter == 0 || counter > 1<<32-1 {
		return nil, errCounterExhausted
	}
	b := wire.AppendHeartbeatHeader(buf[:0], wire.SealedHeader{Room: room, Epoch: k.sealedEpoch()}, uint32(counter))
	var pt [wire.HeartbeatLen]byte
	return k.aead.Seal(b, nonce(nb, wire.TypeHeartbeat, counter), wire.AppendHeartbeat(pt[:0], hb), b), nil
}

var errAuth = errors.New("not sealed under the room key")

// sealed is the cleartext of a shard or heartbeat packet, parsed.
type sealed struct {
	wire.SealedHeader
	shard  wire.ShardInfo // a shard's place in its block
	hdrLen int            // the cleartext's length: where the ciphertext starts
	n      uint64         // the nonce's number (nonce): shardNonceNo, or the heartbeat's counter
}

// parseSealed decodes the cleartext of a shard or heartbeat packet.
func parseSealed(pkt []byte) (sealed, error) {
	var s sealed
	h, err := wire.ParseSealedHeader(pkt)
	if err != nil {
		return s, err
	}
	s.SealedHeader = h
	if h.Type == wire.TypeShard {
		if s.shard, err = wire.ParseShardInfo(pkt); err != nil {
			return s, err
		}
		s.hdrLen, s.n = wire.ShardHeaderLen, shardNonceNo(s.shard)
		return s, nil
	}
	c, err := wire.ParseHeartbeatCounter(pkt)
	if err != nil {
		return s, err
	}
	s.hdrLen, s.n = wire.HeartbeatHeaderLen, uint64(c)
	return s, nil
}

// openSealed opens a shard or heartbeat packet, whose cleartext is s,
// into scratch[:0].
func openSealed(scratch []byte, nb *nonceBuf, k *epochKey, s *sealed, pkt []byte) ([]byte, error) {
	out, err := k.aead.Open(scratch[:0], nonce(nb, s.Type, s.n), pkt[s.hdrLen:], pkt[:s.hdrLen])
	if err != nil {
		return scratch[:0], errAuth
	}
	return out, nil
}

// sealNack appends to buf[:0] a NACK packet sealed under the epoch's NACK
// key with a random nonce.
func sealNack(buf []byte, k *epochKey, room [wire.RoomIDLen]byte, body []byte) ([]byte, error) {
	h := wire.NackHeader{Room: room, Epoch: k.wireEpoch()}
	if _, err := rand.Read(h.Nonce[:]); err != nil {
		return nil, err
	}
	b := wire.AppendNackHeader(buf[:0], h)
	return k.nack.Seal(b, h.Nonce[:], body, b[:wire.NackHeaderLen]), nil
}

// openNack opens a NACK packet into scratch[:0] and decodes it into n.
func openNack(scratch []byte, k *epochKey, h wire.NackHeader, pkt []byte, n *wire.Nack) error {
	body, err := k.nack.Open(scratch[:0], h.Nonce[:], pkt[wire.NackHeaderLen+wire.NonceXLen:], pkt[:wire.NackHeaderLen])
	if err != nil {
		return errAuth
	}
	return wire.ParseNackBody(body, n)
}

// batchOpts is the signature context of a room's batches: it names the
// room, so that a batch cannot be replayed into another room.
func batchOpts(room [wire.RoomIDLen]byte) *ed25519.Options {
	return &ed25519.Options{Context: wire.BatchContext + string(room[:])}
}

// signBatch encodes and signs a batch into buf[:0].
func signBatch(buf []byte, id *Identity, opts *ed25519.Options, first uint64, recs []wire.Record) ([]byte, error) {
	b, err := wire.AppendBatchBody(buf[:0], first, recs)
	if err != nil {
		return nil, err
	}
	sig, err := id.Key.Sign(nil, b, opts)
	if err != nil {
		return nil, fmt.Errorf("sign batch: %w", err)
	}
	return append(b, sig...), nil
}

// blockOpts is the signature context of a room's blocks on multicast.
func blockOpts(room [wire.RoomIDLen]byte) *ed25519.Options {
	return &ed25519.Options{Context: wire.BlockContext + string(room[:])}
}

// signBlock appends the host's signature to a block's batches (§4.2).
func signBlock(batches []byte, id *Identity, opts *ed25519.Options) ([]byte, error) {
	sig, err := id.Key.Sign(nil, batches, opts)
	if err != nil {
		return nil, fmt.Errorf("sign block: %w", err)
	}
	return wire.AppendBlockSig(batches, sig), nil
}

// verifyBlock checks that the host sent a block of room's, by its
// signature or by this member's MAC (bm, nil if it has no slot; bd
// hashes the block for it), and returns its batches.
func verifyBlock(hostKey ed25519.PublicKey, opts *ed25519.Options, room *[wire.RoomIDLen]byte, bm *blockMAC, bd *blockDigester, payload []byte) ([]byte, error) {
	batches, auth, err := wire.SplitBlock(payload)
	if err != nil {
		return nil, err
	}
	if auth.Sig != nil {
		if ed25519.VerifyWithOptions(hostKey, batches, auth.Sig, opts) != nil {
			return nil, fmt.Errorf("block: %w", ErrBadSignature)
		}
		return batches, nil
	}
	var mac []byte
	if bm != nil {
		mac = auth.MAC(bm.slot)
	}
	if mac == nil || [wire.MACLen]byte(mac) == [wire.MACLen]byte{} {
		return nil, fmt.Errorf("block: %w", errNoMAC)
	}
	if !hmac.Equal(bm.sumMAC(bd.digest(room, batches)), mac) {
		return nil, fmt.Errorf("block: %w: MAC", ErrBadSignature)
	}
	return batches, nil
}

// verifyBatch decodes a batch into recs[:0], making nicks with nick (nil:
// a string each), and checks the host signed it.
func verifyBatch(hostKey ed25519.PublicKey, opts *ed25519.Options, b []byte, recs []wire.Record, nick func([]byte) string) (wire.Batch, error) {
	bt, err := wire.ParseBatchNicks(b, recs, nick)
	if err != nil {
		return bt, err
	}
	if ed25519.VerifyWithOptions(hostKey, bt.Signed, bt.Sig[:], opts) != nil {
		return bt, fmt.Errorf("batch: %w", ErrBadSignature)
	}
	return bt, nil
}
