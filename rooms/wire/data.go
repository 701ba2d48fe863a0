package wire

import (
	"encoding/binary"
	"fmt"
)

// RoomIDLen is the length of a room id: a hash of (Q, R) that lets a
// receiver find the room, and its key, before it decrypts anything.
const RoomIDLen = 8

// KeyIDLen is the length of a member key id: a prefix of the hash of the
// member's Ed25519 key, naming who sent a record.
const KeyIDLen = 8

// SealedHeaderLen is the length of the cleartext header of a packet the
// host seals under the room's epoch key.
const SealedHeaderLen = HeaderLen + RoomIDLen + 8 + 8

// TagLen is the length of the ChaCha20-Poly1305 tag after a ciphertext.
const TagLen = 16

// SealedHeader begins every packet a host seals under a room's epoch key
// (shards and heartbeats).
//
//	 0  header (TypeShard or TypeHeartbeat)  4 bytes
//	 4  room id                             8 bytes
//	12  key epoch                           uint64
//	20  packet counter                      uint64, the AEAD nonce, unique per epoch
type SealedHeader struct {
	Type    byte
	Room    [RoomIDLen]byte
	Epoch   uint64
	Counter uint64
}

// AppendSealedHeader appends h to b.
func AppendSealedHeader(b []byte, h SealedHeader) []byte {
	b = appendHeader(b, h.Type)
	b = append(b, h.Room[:]...)
	b = appendU64(b, h.Epoch)
	return appendU64(b, h.Counter)
}

// ParseSealedHeader decodes the header of a shard or heartbeat packet.
// The rest of the packet is the type's own header, then the ciphertext.
func ParseSealedHeader(b []byte) (SealedHeader, error) {
	var h SealedHeader
	typ, err := PacketType(b)
	if err != nil {
		return h, err
	}
	if typ != TypeShard && typ != TypeHeartbeat {
		return h, fmt.Errorf("%w %d, want shard or heartbeat", ErrType, typ)
	}
	if len(b) < SealedHeaderLen+TagLen {
		return h, ErrShort
	}
	h.Type = typ
	copy(h.Room[:], b[HeaderLen:])
	h.Epoch = binary.BigEndian.Uint64(b[HeaderLen+RoomIDLen:])
	h.Counter = binary.BigEndian.Uint64(b[HeaderLen+RoomIDLen+8:])
	return h, nil
}

// MaxShards bounds the shards (data and parity) of one FEC block.
const MaxShards = 64

// ShardHeaderLen is the length of a shard packet's cleartext header, all
// of which is the AEAD's associated data.
const ShardHeaderLen = SealedHeaderLen + 8 + 3

// ShardInfo places a shard in its block. It follows the sealed header.
//
//	28  block number   uint64, counting from 1 within the epoch
//	36  index          uint8: 0..K-1 data shards, K.. parity shards
//	37  K              uint8: data shards of the block, 1..MaxShards
//	38  sent           uint8: shards sent at first, before any repair (K + proactive parity)
//	39  ciphertext of the shard, then the tag
//
// A block is one signed batch, cut into K equal data shards; any K of its
// shards rebuild it.
type ShardInfo struct {
	Block uint64
	Index uint8
	K     uint8
	Sent  uint8
}

// AppendShardHeader appends a shard packet's header to b.
func AppendShardHeader(b []byte, h SealedHeader, si ShardInfo) []byte {
	h.Type = TypeShard
	b = AppendSealedHeader(b, h)
	b = appendU64(b, si.Block)
	return append(b, si.Index, si.K, si.Sent)
}

// ParseShardInfo decodes the shard header of a packet whose sealed header
// says it is a shard.
func ParseShardInfo(b []byte) (ShardInfo, error) {
	var si ShardInfo
	if len(b) < ShardHeaderLen+TagLen {
		return si, ErrShort
	}
	si.Block = binary.BigEndian.Uint64(b[SealedHeaderLen:])
	si.Index, si.K, si.Sent = b[SealedHeaderLen+8], b[SealedHeaderLen+9], b[SealedHeaderLen+10]
	switch {
	case si.Block == 0 || si.K == 0 || si.K > MaxShards || si.Index >= MaxShards:
		return si, fmt.Errorf("shard: %w: block %d index %d of k %d", ErrInvalid, si.Block, si.Index, si.K)
	case si.Sent < si.K || si.Sent > MaxShards:
		return si, fmt.Errorf("shard: %w: %d sent of k %d", ErrInvalid, si.Sent, si.K)
	}
	return si, nil
}

// HeartbeatLen is the length of a heartbeat's plaintext.
const HeartbeatLen = 16

// Heartbeat is what a host multicasts when a room is idle, so that a
// member that lost the tail of the stream learns of it. Its plaintext,
// sealed after the sealed header:
//
//	next sequence number   uint64: the next the host will assign
//	last block             uint64: the newest block of this epoch, 0 if none
type Heartbeat struct {
	Next      uint64
	LastBlock uint64
}

// AppendHeartbeat appends a heartbeat's plaintext to b.
func AppendHeartbeat(b []byte, hb Heartbeat) []byte {
	return appendU64(appendU64(b, hb.Next), hb.LastBlock)
}

// ParseHeartbeat decodes a heartbeat's plaintext.
func ParseHeartbeat(b []byte) (Heartbeat, error) {
	if len(b) != HeartbeatLen {
		return Heartbeat{}, fmt.Errorf("heartbeat: %w", ErrInvalid)
	}
	return Heartbeat{Next: binary.BigEndian.Uint64(b), LastBlock: binary.BigEndian.Uint64(b[8:])}, nil
}

// Record kinds. ONLY APPEND.
const (
	KindMessage = 1 // a chat line
	KindJoin    = 2 // a member joined; Text is empty
	KindPart    = 3 // a member left; Text is empty
)

// Record is one sequenced event of a room.
//
//	kind    uint8
//	key id  8 bytes: who it is from
//	nick    uint8 length, ≤ MaxNick bytes
//	text    uint16 length, ≤ MaxText bytes
type Record struct {
	Kind  byte
	KeyID [KeyIDLen]byte
	Nick  string
	Text  string
}

// Batch is the unit a host signs: consecutive records starting at sequence
// number First. One batch makes one FEC block on multicast, one entry of
// the host's log, and one Batch frame on a session.
//
//	first sequence   uint64, ≥ 1
//	record count     uint8, 1..MaxRecords
//	records
//	Ed25519ctx signature by Q over everything above, with the context
//	"meshd batch v1 " followed by the room id
//
// The room id in the context keeps a batch of one room from passing as
// another's. The signature makes the host's word unforgeable even by
// members, who hold the key that seals shards.
type Batch struct {
	First   uint64
	Records []Record
	Sig     [SigLen]byte
	Signed  []byte // the batch bytes before Sig; set by ParseBatch
}

// MaxRecords bounds the records in one batch.
const MaxRecords = 255

// MaxBatch bounds a batch's encoded size.
const MaxBatch = 24 << 10

// AppendBatchBody appends the signed part of a batch (without the
// signature) to b. It leaves b unchanged on error.
func AppendBatchBody(b []byte, first uint64, recs []Record) ([]byte, error) {
	if len(recs) == 0 || len(recs) > MaxRecords {
		return b, fmt.Errorf("%w: %d records", ErrInvalid, len(recs))
	}
	if first == 0 || first+uint64(len(recs)) < first {
		return b, fmt.Errorf("%w: batch at sequence %d", ErrInvalid, first)
	}
	start := len(b)
	b = appendU64(b, first)
	b = append(b, byte(len(recs)))
	for i := range recs {
		r := &recs[i]
		if r.Kind == 0 || len(r.Nick) > MaxNick || len(r.Text) > MaxText {
			return b[:start], fmt.Errorf("%w: record %d", ErrInvalid, i)
		}
		b = append(b, r.Kind)
		b = append(b, r.KeyID[:]...)
		b = appendStr8(b, r.Nick)
		b = appendU16(b, uint16(len(r.Text)))
		b = append(b, r.Text...)
	}
	if len(b)-start+SigLen > MaxBatch {
		return b[:start], fmt.Errorf("%w: batch of %d bytes", ErrTooLong, len(b)-start+SigLen)
	}
	return b, nil
}

// ParseBatch decodes a batch. Records are appended to recs[:0] so a
// receive loop can reuse one slice.
func ParseBatch(b []byte, recs []Record) (Batch, error) {
	return ParseBatchNicks(b, recs, nil)
}

// ParseBatchNicks is ParseBatch making each record's nick with nick (nil:
// a new string each), so that a receiver can hand out the strings of the
// few nicks a room has, rather than allocate one per record.
func ParseBatchNicks(b []byte, recs []Record, nick func([]byte) string) (Batch, error) {
	var bt Batch
	if len(b) > MaxBatch {
		return bt, fmt.Errorf("batch: %w", ErrTooLong)
	}
	if len(b) < SigLen {
		return bt, ErrShort
	}
	body := b[:len(b)-SigLen]
	r := reader{b: body}
	bt.First = r.u64()
	n := int(r.u8())
	recs = recs[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var rec Record
		rec.Kind = r.u8()
		copy(rec.KeyID[:], r.take(KeyIDLen))
		if nick != nil {
			rec.Nick = nick(r.bytes8(MaxNick))
		} else {
			rec.Nick = string(r.bytes8(MaxNick))
		}
		rec.Text = string(r.bytes16(MaxText))
		if rec.Kind == 0 {
			r.fail(ErrInvalid)
		}
		recs = append(recs, rec)
	}
	if err := r.done(); err != nil {
		return Batch{}, fmt.Errorf("batch: %w", err)
	}
	if n == 0 || bt.First == 0 || bt.First+uint64(n) < bt.First {
		return Batch{}, fmt.Errorf("batch: %w: %d records at sequence %d", ErrInvalid, n, bt.First)
	}
	bt.Records = recs
	copy(bt.Sig[:], b[len(body):])
	bt.Signed = body
	return bt, nil
}
