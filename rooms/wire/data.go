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

// RoomTagLen is the length of a room's tag, the first bytes of its id,
// by which a sealed packet names its room: 4 bytes a packet rather than 8
// (a busy room's link carries ten thousand a second), and the receiver's
// key, not the tag, says whether a packet is the room's. Two rooms a
// daemon is in share a tag with probability 2^-32 a pair; each then
// tries the other's packets, which fail to open.
const RoomTagLen = 4

// RoomTag is a room's tag: the first RoomTagLen bytes of its id.
type RoomTag [RoomTagLen]byte

// TagOf returns the tag of the room whose id is id.
func TagOf(id [RoomIDLen]byte) RoomTag { return RoomTag(id[:RoomTagLen]) }

// SealedHeaderLen is the length of the cleartext header every packet the
// host seals under the room's epoch key begins with.
const SealedHeaderLen = HeaderLen + RoomTagLen + 1

// TagLen is the length of the ChaCha20-Poly1305 tag after a ciphertext.
const TagLen = 16

// SealedHeader begins every packet a host seals under a room's epoch key
// (shards and heartbeats).
//
//	0  header (TypeShard or TypeHeartbeat)  4 bytes
//	4  room tag                             4 bytes: the first 4 of the room id
//	8  key epoch                            uint8: the epoch's lowest byte (see below)
//
// The nonce is not on the wire: a shard's is its place in its block
// (ShardInfo), a heartbeat's its counter (HeartbeatHeaderLen), each in a
// domain of its own (docs/PROTOCOL.md §4.3).
//
// A key's epoch is 64 bits (the host's boot, its rekeys since), and the
// session's Welcome and Rekey frames carry all of it; the packets carry
// its lowest byte, which tells a member's key from the one before and
// after it. Other epochs can share that byte, but a host's restart ends
// every session, and a packet under a key the member does not hold fails
// to open.
type SealedHeader struct {
	Type  byte
	Room  RoomTag
	Epoch uint8
}

// AppendSealedHeader appends h to b.
func AppendSealedHeader(b []byte, h SealedHeader) []byte {
	b = appendHeader(b, h.Type)
	b = append(b, h.Room[:]...)
	return append(b, h.Epoch)
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
	h.Room = RoomTag(b[HeaderLen:])
	h.Epoch = b[HeaderLen+RoomTagLen]
	return h, nil
}

// MaxShards bounds the shards (data and parity) of one FEC block: what a
// shard's index and sent bytes can count, and, with one more, what a
// Reed-Solomon code over GF(2^8) can have.
const MaxShards = 255

// MaxBlockShards bounds K, the data shards of one block: about half of
// MaxShards, so that a block can have as much parity as data. A block's
// parity is what the unluckiest of its members loses of it, a smaller
// share of a bigger block: with 16 members at 5 % loss, 11 % of 64
// shards, 9 % of 128 (which took a capacity run from 1.23 to 1.21 link
// bytes a payload byte).
const MaxBlockShards = 128

// MaxBlock bounds the bytes of a block's payload: its batches and how
// they are authenticated (blockauth.go), which with the padding's first
// byte (package fec) fill at most MaxBlockShards shards.
const MaxBlock = MaxBlockShards*ShardData - 1

// BlockContext begins the signature context of a block's payload. On
// multicast a block's batches go without their own signatures, under one
// signature of the host's over them all: a member checks one signature a
// block, not one a batch (a busy room's block holds several), and the air
// carries one.
const BlockContext = "meshd block v5 "

// ShardHeaderLen is the length of a shard packet's cleartext header, all
// of which is the AEAD's associated data.
const ShardHeaderLen = SealedHeaderLen + 3 + 3

// MaxBlockNo is the highest block number a shard can carry. A host moves
// to a new epoch key, whose blocks count from 1 again, long before (§4.3).
const MaxBlockNo = 1<<24 - 1

// ShardInfo places a shard in its block. It follows the sealed header.
//
//	 9  block number   uint24, counting from 1 within the epoch
//	12  index          uint8: 0..K-1 data shards, K.. parity shards
//	13  K              uint8: data shards of the block, 1..MaxBlockShards
//	14  sent           uint8: shards sent at first, before any repair (K + proactive parity)
//	15  ciphertext of the shard, then the tag
//
// A block is one or more batches, each behind its length and without its
// signature (see AppendBlockBatch), then the host's signature over them
// (BlockContext) or its members' MACs (AppendBlockMACs), padded and cut
// into K equal data shards (package fec); any K of its shards rebuild it.
// The shard's nonce is its block and index (§4.3): every copy of a shard,
// first or repair, is the same packet.
type ShardInfo struct {
	Block uint64 // at most MaxBlockNo
	Index uint8
	K     uint8
	Sent  uint8
}

// AppendShardHeader appends a shard packet's header to b. The caller
// keeps si.Block at most MaxBlockNo.
func AppendShardHeader(b []byte, h SealedHeader, si ShardInfo) []byte {
	h.Type = TypeShard
	b = AppendSealedHeader(b, h)
	return append(b, byte(si.Block>>16), byte(si.Block>>8), byte(si.Block), si.Index, si.K, si.Sent)
}

// ParseShardInfo decodes the shard header of a packet whose sealed header
// says it is a shard.
func ParseShardInfo(b []byte) (ShardInfo, error) {
	var si ShardInfo
	if len(b) < ShardHeaderLen+TagLen {
		return si, ErrShort
	}
	h := b[SealedHeaderLen:ShardHeaderLen]
	si.Block = uint64(h[0])<<16 | uint64(h[1])<<8 | uint64(h[2])
	si.Index, si.K, si.Sent = h[3], h[4], h[5]
	switch {
	case si.Block == 0 || si.K == 0 || si.K > MaxBlockShards || si.Index >= MaxShards:
		return si, fmt.Errorf("shard: %w: block %d index %d of k %d", ErrInvalid, si.Block, si.Index, si.K)
	case si.Sent < si.K || si.Sent > MaxShards:
		return si, fmt.Errorf("shard: %w: %d sent of k %d", ErrInvalid, si.Sent, si.K)
	}
	return si, nil
}

// AppendBlockBatch appends a batch's body (the batch without its
// signature, as AppendBatchBody made it) to a block's payload: its length
// in the block (uint16), then its bytes, except that the records of a
// batch of one sender carry no sender index, which could only be 0 (a
// busy room's batch is often one sender's lines, and the byte was half a
// percent of a 200-byte line). A busy room's block carries the batches of
// up to 100 ms, so that its parity is sized for hundreds of lines at once:
// the unluckiest of many members loses a smaller share of a big block
// than of a small one.
func AppendBlockBatch(b, body []byte) []byte {
	records, senders := int(body[8]), int(body[9]) // after the first sequence number
	b = appendU16(b, uint16(BlockBatchLen(len(body), records, senders)))
	if senders != 1 {
		return append(b, body...)
	}
	// The header and the one sender (key id, nick), then each record
	// without the sender index after its head.
	p := BatchHeaderLen + KeyIDLen + 1 + int(body[BatchHeaderLen+KeyIDLen])
	b = append(b, body[:p]...)
	for p < len(body) {
		head, n := binary.Uvarint(body[p:])
		b = append(b, body[p:p+n]...)
		p += n + 1
		b = append(b, body[p:p+int(head>>3)]...)
		p += int(head >> 3)
	}
	return b
}

// BlockBatchLen is how many bytes a batch body of n bytes, with records
// records of senders senders, takes in a block after its length
// (AppendBlockBatch).
func BlockBatchLen(n, records, senders int) int {
	if senders == 1 {
		return n - records
	}
	return n
}

// NextBlockBatch splits the first batch body off a block's batches; rest
// is what follows it. The body is not parsed: ParseBlockBatch does that.
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

// HeartbeatHeaderLen is the length of a heartbeat packet's cleartext
// header, the sealed header and then the heartbeat's counter, all of it
// the AEAD's associated data:
//
//	 9  counter   uint32 ≥ 1, higher than the epoch's heartbeats before it: the nonce
//	13  ciphertext of the plaintext, then the tag
const HeartbeatHeaderLen = SealedHeaderLen + 4

// AppendHeartbeatHeader appends a heartbeat packet's header to b.
func AppendHeartbeatHeader(b []byte, h SealedHeader, counter uint32) []byte {
	h.Type = TypeHeartbeat
	return appendU32(AppendSealedHeader(b, h), counter)
}

// ParseHeartbeatCounter decodes the counter of a packet whose sealed
// header says it is a heartbeat.
func ParseHeartbeatCounter(b []byte) (uint32, error) {
	if len(b) < HeartbeatHeaderLen+TagLen {
		return 0, ErrShort
	}
	c := binary.BigEndian.Uint32(b[SealedHeaderLen:])
	if c == 0 {
		return 0, fmt.Errorf("heartbeat: %w: counter 0", ErrInvalid)
	}
	return c, nil
}

// Heartbeat is what a host multicasts when a room is idle, so that a
// member that lost the tail of the stream learns of it. Its plaintext,
// sealed after the heartbeat header:
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

// Record kinds. ONLY APPEND, and at most MaxKind: a record carries its
// kind in the low three bits of its head (Record).
const (
	KindMessage = 1 // a chat line
	KindJoin    = 2 // a member joined; Text is empty
	KindPart    = 3 // a member left; Text is empty
	MaxKind     = 7
)

// Record is one sequenced event of a room. In a batch, its sender (key id
// and nick) is an index into the batch's sender table, so that a busy
// room's lines do not each carry their author's 8-byte key id and nick:
//
//	head    uvarint, 1 to 3 bytes: length of text × 8 + kind (1..MaxKind), text ≤ MaxText bytes
//	sender  uint8: index into the batch's senders
//	text
//
// A 200-byte line is then a 203-byte record, and a line of up to 15
// bytes costs 2 beyond its text. The head is the shortest uvarint
// (encoding/binary's, little-endian groups of 7 bits) of its value;
// a decoder rejects longer ones, which would be a second encoding.
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
// batch format: v1 batches carried the key id and nick in every record,
// v2 a record's kind and length in 3 fixed bytes, and a batch of one
// format cannot verify as another.
const BatchContext = "meshd batch v3 "

// MaxRecords bounds the records in one batch.
const MaxRecords = 255

// MaxBatch bounds a batch's encoded size.
const MaxBatch = 24 << 10

// RecordLen is how many bytes rec adds to a batch body: its record, and
// if newSender, its sender's entry in the sender table.
func RecordLen(rec *Record, newSender bool) int {
	n := recordHeadLen(len(rec.Text)) + 1 + len(rec.Text)
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
		if r.Kind == 0 || r.Kind > MaxKind || len(r.Nick) > MaxNick || len(r.Text) > MaxText {
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
		b = binary.AppendUvarint(b, uint64(len(r.Text))<<3|uint64(r.Kind))
		b = append(b, of[i])
		b = append(b, r.Text...)
	}
	if len(b)-start+SigLen > MaxBatch {
		return b[:start], fmt.Errorf("%w: batch of %d bytes", ErrTooLong, len(b)-start+SigLen)
	}
	return b, nil
}

// recordHeadLen is the length of the head of a record with text of n
// bytes.
func recordHeadLen(n int) int {
	switch v := n << 3; {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	}
	return 3
}

// maxRecordHead is the longest record head: MaxText × 8 + MaxKind needs 18
// bits, three groups of 7.
const maxRecordHead = 3

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
// elsewhere, as ParseBatchNicks does; Sig is left zero.
func ParseBatchBody(body []byte, recs []Record, nick func([]byte) string) (Batch, error) {
	bt, err := parseBatchBody(body, recs, nick, false)
	if err == nil {
		bt.Signed = body
	}
	return bt, err
}

// ParseBlockBatch decodes a batch of a block (NextBlockBatch), which is
// signed as part of its block: Signed and Sig are left empty.
func ParseBlockBatch(body []byte, recs []Record, nick func([]byte) string) (Batch, error) {
	return parseBatchBody(body, recs, nick, true)
}

// parseBatchBody decodes a batch body; inBlock says it is in a block's
// form, whose records carry no sender index if it has one sender.
func parseBatchBody(body []byte, recs []Record, nick func([]byte) string, inBlock bool) (Batch, error) {
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
		head := r.uvarint(maxRecordHead)
		rec.Kind = byte(head & MaxKind)
		si := 0
		if !inBlock || ns > 1 {
			si = int(r.u8())
		}
		if head>>3 > MaxText {
			r.fail(ErrTooLong)
			break
		}
		rec.Text = string(r.take(int(head >> 3)))
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
	return bt, nil
}
