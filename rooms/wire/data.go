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

// DataHeaderLen is the length of a data packet's cleartext header, which is
// also the AEAD's associated data.
const DataHeaderLen = HeaderLen + RoomIDLen + 8 + 8

// TagLen is the length of the ChaCha20-Poly1305 tag after the ciphertext.
const TagLen = 16

// DataHeader is the cleartext start of a data packet.
//
//	 0  header (TypeData)       4 bytes
//	 4  room id                 8 bytes
//	12  key epoch               uint64
//	20  packet counter          uint64, the AEAD nonce, unique per epoch
//	28  ciphertext of a Batch, then the 16-byte tag
type DataHeader struct {
	Room    [RoomIDLen]byte
	Epoch   uint64
	Counter uint64
}

// AppendDataHeader appends h to b.
func AppendDataHeader(b []byte, h DataHeader) []byte {
	b = appendHeader(b, TypeData)
	b = append(b, h.Room[:]...)
	b = appendU64(b, h.Epoch)
	return appendU64(b, h.Counter)
}

// ParseDataHeader decodes the header of a data packet and returns it with
// the sealed remainder.
func ParseDataHeader(b []byte) (DataHeader, []byte, error) {
	var h DataHeader
	typ, err := PacketType(b)
	if err != nil {
		return h, nil, err
	}
	if typ != TypeData {
		return h, nil, fmt.Errorf("%w %d, want data", ErrType, typ)
	}
	if len(b) < DataHeaderLen+TagLen {
		return h, nil, ErrShort
	}
	copy(h.Room[:], b[HeaderLen:])
	h.Epoch = binary.BigEndian.Uint64(b[HeaderLen+RoomIDLen:])
	h.Counter = binary.BigEndian.Uint64(b[HeaderLen+RoomIDLen+8:])
	return h, b[DataHeaderLen:], nil
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

// Batch is the plaintext of a data packet: consecutive records starting at
// sequence number First, signed by the host. A batch with no records is a
// heartbeat: First is then the next sequence number the host will assign,
// so a receiver that missed the tail of the stream learns of it.
//
//	first sequence   uint64
//	record count     uint8
//	records
//	Ed25519ctx signature by Q over the packet header and everything above
//
// The signature sits inside the AEAD so that outsiders, who lack the epoch
// key, can only make a receiver do a cheap AEAD check, never a signature
// check; and a member, who has the key, still cannot forge the host.
type Batch struct {
	First   uint64
	Records []Record
	Sig     [SigLen]byte
	Signed  []byte // the batch bytes before Sig; set by ParseBatch
}

// MaxRecords bounds the records in one batch.
const MaxRecords = 255

// AppendBatchBody appends the signed part of a batch (without the
// signature) to b.
func AppendBatchBody(b []byte, first uint64, recs []Record) ([]byte, error) {
	if len(recs) > MaxRecords {
		return b, fmt.Errorf("%w: %d records", ErrTooLong, len(recs))
	}
	if first == 0 || first+uint64(len(recs)) < first {
		// ParseBatch refuses these; sending one would only make every
		// receiver drop it.
		return b, fmt.Errorf("%w: sequence %d", ErrInvalid, first)
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
		b = appendBytes16(b, []byte(r.Text))
	}
	return b, nil
}

// ParseBatch decodes a batch plaintext. Records are appended to recs[:0]
// so a receive loop can reuse one slice.
func ParseBatch(b []byte, recs []Record) (Batch, error) {
	var bt Batch
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
		rec.Nick = r.str8(MaxNick)
		rec.Text = string(r.bytes16(MaxText))
		if rec.Kind == 0 {
			r.fail(ErrInvalid)
		}
		recs = append(recs, rec)
	}
	if err := r.done(); err != nil {
		return Batch{}, fmt.Errorf("batch: %w", err)
	}
	if bt.First == 0 || bt.First+uint64(n) < bt.First {
		return Batch{}, fmt.Errorf("batch: %w: sequence %d", ErrInvalid, bt.First)
	}
	bt.Records = recs
	copy(bt.Sig[:], b[len(body):])
	bt.Signed = body
	return bt, nil
}
