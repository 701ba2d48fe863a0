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
const MaxShards = 128

// MaxBlockShards bounds K, the data shards of one block: half of
// MaxShards, so that a block can have as much parity as data.
const MaxBlockShards = MaxShards / 2

// MaxBlock bounds the bytes of a block's payload: its batches and how
// they are authenticated (blockauth.go).
const MaxBlock = MaxBlockShards * ShardData

// BlockContext begins the signature context of a block's payload. On
// multicast a block's batches go without their own signatures, under one
// signature of the host's over them all: a member checks one signature a
// block, not one a batch (a busy room's block holds several), and the air
// carries one.
const BlockContext = "meshd block v3 "

// ShardHeaderLen is the length of a shard packet's cleartext header, all
// of which is the AEAD's associated data.
const ShardHeaderLen = SealedHeaderLen + 8 + 3

// ShardInfo places a shard in its block. It follows the sealed header.
//
//	28  block number   uint64, counting from 1 within the epoch
//	36  index          uint8: 0..K-1 data shards, K.. parity shards
//	37  K              uint8: data shards of the block, 1..MaxBlockShards
//	38  sent           uint8: shards sent at first, before any repair (K + proactive parity)
//	39  ciphertext of the shard, then the tag
//
// A block is one or more batches, each behind its length and without its
// signature (see AppendBlockBatch), then the host's signature over them
// (BlockContext) or its members' tags (AppendBlockTags), cut into K equal
// data shards; any K of its shards rebuild it.
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
	case si.Block == 0 || si.K == 0 || si.K > MaxBlockShards || si.Index >= MaxShards:
		return si, fmt.Errorf("shard: %w: block %d index %d of k %d", ErrInvalid, si.Block, si.Index, si.K)
	case si.Sent < si.K || si.Sent > MaxShards:
		return si, fmt.Errorf("shard: %w: %d sent of k %d", ErrInvalid, si.Sent, si.K)
	}
	return si, nil
}

// AppendBlockBatch appends a batch's body (the batch without its
// signature) to a block's payload: its length (uint16), then its bytes. A
// busy room's block carries the batches of up to 100 ms, so that its
// parity is sized for hundreds of lines at once: the unluckiest of many
// members loses a smaller share of a big block than of a small one.
func AppendBlockBatch(b, body []byte) []byte {
	return append(appendU16(b, uint16(len(body))), body...)
}

// NextBlockBatch splits the first batch body off a block's batches; rest
// is what follows it. The body is not parsed: ParseBatchBody does that.
func NextBlockBatch(b []byte) (body, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("block: %w", ErrShort)
	}
	n := int(binary.BigEndian.Uint16(b))
	switch {
	case n == 0 || n > MaxBatch-SigLen:
		return nil, nil, fmt.Errorf("block: %w: batch of %d bytes", ErrInvalid, n)
	case len(b)-2 < n:
		return nil, nil, fmt.Errorf("block: %w", ErrShort)
	}
	return b[2 : 2+n], b[2+n:], nil
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

// Record is one sequenced event of a room. In a batch, its sender (key id
// and nick) is an index into the batch's sender table, so that a busy
// room's lines do not each carry their author's 8-byte key id and nick:
//
//	kind    uint8
//	sender  uint8: index into the batch's senders
//	text    uint16 length, ≤ MaxText bytes
type Record struct {
	Kind  byte
	KeyID [KeyIDLen]byte // who it is from
	Nick  string
	Text  string
}

// Batch is the unit a host signs: consecutive records starting at sequence
// number First. A batch is one entry of the host's log and one Batch frame
// on a session; on multicast one or more batches make one FEC block,
// without their signatures, under the block's (AppendBlockBatch).
//
//	first sequence   uint64, ≥ 1
//	record count     uint8, 1..MaxRecords
//	sender count     uint8, 1..record count
//	senders          key id (8 bytes), nick (uint8 length, ≤ MaxNick bytes)
//	records
//	Ed25519ctx signature by Q over everything above, with the context
//	BatchContext followed by the room id
//
// The senders are the distinct (key id, nick) pairs of the records, in the
// order the records first name them, each named by some record: one
// encoding per batch, so that a decoded batch re-encodes to the bytes that
// were signed. The room id in the context keeps a batch of one room from
// passing as another's. The signature makes the host's word unforgeable
// even by members, who hold the key that seals shards.
type Batch struct {
	First   uint64
	Records []Record
	Sig     [SigLen]byte
	Signed  []byte // the batch bytes before Sig; set by ParseBatch and ParseBatchBody
}

// BatchContext begins the signature context of a batch. It names the
// batch format: v1 batches carried the key id and nick in every record, and
// a batch of one format cannot verify as the other.
const BatchContext = "meshd batch v2 "

// MaxRecords bounds the records in one batch.
const MaxRecords = 255

// MaxBatch bounds a batch's encoded size.
const MaxBatch = 24 << 10

// RecordLen is how many bytes rec adds to a batch body: its record, and
// if newSender, its sender's entry in the sender table.
func RecordLen(rec *Record, newSender bool) int {
	n := 1 + 1 + 2 + len(rec.Text)
	if newSender {
		n += KeyIDLen + 1 + len(rec.Nick)
	}
	return n
}

// BatchHeaderLen is the length of a batch body before its senders.
const BatchHeaderLen = 8 + 1 + 1

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
	b = append(b, byte(len(recs)), 0) // the sender count, once known
	// senders[i] is the index of the record that first named sender i;
	// of[j] is record j's sender. On the stack: no allocation per batch.
	var senders [MaxRecords]uint8
	var of [MaxRecords]uint8
	n := 0
	for i := range recs {
		r := &recs[i]
		if r.Kind == 0 || len(r.Nick) > MaxNick || len(r.Text) > MaxText {
			return b[:start], fmt.Errorf("%w: record %d", ErrInvalid, i)
		}
		s := 0
		for s < n && !sameSender(&recs[senders[s]], r) {
			s++
		}
		if s == n {
			senders[n] = uint8(i)
			n++
			b = append(b, r.KeyID[:]...)
			b = appendStr8(b, r.Nick)
		}
		of[i] = uint8(s)
	}
	b[start+9] = byte(n)
	for i := range recs {
		r := &recs[i]
		b = append(b, r.Kind, of[i])
		b = appendU16(b, uint16(len(r.Text)))
		b = append(b, r.Text...)
	}
	if len(b)-start+SigLen > MaxBatch {
		return b[:start], fmt.Errorf("%w: batch of %d bytes", ErrTooLong, len(b)-start+SigLen)
	}
	return b, nil
}

func sameSender(a, b *Record) bool { return a.KeyID == b.KeyID && a.Nick == b.Nick }

// ParseBatch decodes a batch. Records are appended to recs[:0] so a
// receive loop can reuse one slice.
func ParseBatch(b []byte, recs []Record) (Batch, error) {
	return ParseBatchNicks(b, recs, nil)
}

// ParseBatchNicks is ParseBatch making each sender's nick with nick (nil:
// a new string each), so that a receiver can hand out the strings of the
// few nicks a room has, rather than allocate one per batch.
func ParseBatchNicks(b []byte, recs []Record, nick func([]byte) string) (Batch, error) {
	if len(b) > MaxBatch {
		return Batch{}, fmt.Errorf("batch: %w", ErrTooLong)
	}
	if len(b) < SigLen {
		return Batch{}, ErrShort
	}
	bt, err := ParseBatchBody(b[:len(b)-SigLen], recs, nick)
	if err != nil {
		return bt, err
	}
	copy(bt.Sig[:], b[len(b)-SigLen:])
	return bt, nil
}

// ParseBatchBody decodes the signed part of a batch whose signature is
// elsewhere (a block's, on multicast), as ParseBatchNicks does; Sig is
// left zero.
func ParseBatchBody(body []byte, recs []Record, nick func([]byte) string) (Batch, error) {
	var bt Batch
	if len(body) > MaxBatch-SigLen {
		return bt, fmt.Errorf("batch: %w", ErrTooLong)
	}
	r := reader{b: body}
	bt.First = r.u64()
	n := int(r.u8())
	ns := int(r.u8())
	if ns == 0 || ns > n {
		r.fail(ErrInvalid)
	}
	type sender struct {
		key  [KeyIDLen]byte
		nick []byte
	}
	var senders [MaxRecords]sender // on the stack: no allocation per batch
	for i := 0; i < ns && r.err == nil; i++ {
		s := &senders[i]
		copy(s.key[:], r.take(KeyIDLen))
		s.nick = r.bytes8(MaxNick)
		for j := range i {
			if senders[j].key == s.key && string(senders[j].nick) == string(s.nick) {
				r.fail(ErrInvalid) // listed twice: not the one encoding
			}
		}
	}
	var nicks [MaxRecords]string
	named := 0 // senders named so far: each record names one of them or the next
	recs = recs[:0]
	for i := 0; i < n && r.err == nil; i++ {
		var rec Record
		rec.Kind = r.u8()
		si := int(r.u8())
		rec.Text = string(r.bytes16(MaxText))
		if rec.Kind == 0 || si > named || si >= ns {
			r.fail(ErrInvalid)
			break
		}
		if si == named {
			if nick != nil {
				nicks[si] = nick(senders[si].nick)
			} else {
				nicks[si] = string(senders[si].nick)
			}
			named++
		}
		rec.KeyID, rec.Nick = senders[si].key, nicks[si]
		recs = append(recs, rec)
	}
	if r.err == nil && named != ns {
		r.fail(ErrInvalid) // a sender no record names
	}
	if err := r.done(); err != nil {
		return Batch{}, fmt.Errorf("batch: %w", err)
	}
	if n == 0 || bt.First == 0 || bt.First+uint64(n) < bt.First {
		return Batch{}, fmt.Errorf("batch: %w: %d records at sequence %d", ErrInvalid, n, bt.First)
	}
	bt.Records = recs
	bt.Signed = body
	return bt, nil
}
