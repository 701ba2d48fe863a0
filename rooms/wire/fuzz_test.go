package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"meshd/rooms/wire"
)

// The fuzz targets check that no input makes a decoder panic, and that
// every input a decoder accepts encodes back to exactly the same bytes: a
// signature over the received bytes then covers the decoded values, with
// no second encoding of the same values to slip past a duplicate check.
// Seeds are valid encodings here and in testdata/fuzz.

func FuzzParseAnnounce(f *testing.F) {
	for _, a := range []wire.Announce{sampleAnnounce()} {
		_, pkt := encodeAnnounce(f, &a)
		f.Add(pkt)
	}
	f.Add(rawAnnounce{room: []byte("r"), addrs: rawAddrs(wire.MaxAddrs)}.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := wire.ParseAnnounce(b)
		if err != nil {
			return
		}
		if len(a.Signed) != len(b)-wire.SigLen || !bytes.Equal(a.Signed, b[:len(a.Signed)]) {
			t.Fatalf("Signed = %x, want all but the last %d bytes of %x", a.Signed, wire.SigLen, b)
		}
		re, err := reencodeAnnounce(&a)
		if err != nil {
			t.Fatalf("AppendAnnounceBody(ParseAnnounce(%x)) = %v, want nil", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}

// FuzzParseSealedHeader decodes the cleartext of shard and heartbeat
// packets as a receiver does (the sealed header, then a shard's place in
// its block or a heartbeat's counter), and a heartbeat's plaintext.
func FuzzParseSealedHeader(f *testing.F) {
	f.Add(sampleShardPacket())
	f.Add(rawShard(^uint32(0), wire.MaxShards-1, wire.MaxBlockShards, wire.MaxShards))
	f.Add(sampleHeartbeatPacket())
	f.Add(wire.AppendHeartbeat(nil, wire.Heartbeat{Next: 9, LastBlock: 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if hb, err := wire.ParseHeartbeat(b); err == nil {
			if re := wire.AppendHeartbeat(nil, hb); !bytes.Equal(re, b) {
				t.Fatalf("re-encoding of heartbeat %x = %x, want the same bytes", b, re)
			}
		}
		h, err := wire.ParseSealedHeader(b)
		if err != nil {
			return
		}
		if len(b) < wire.SealedHeaderLen+wire.TagLen {
			t.Fatalf("ParseSealedHeader accepted %d bytes, fewer than a header and a tag", len(b))
		}
		var si wire.ShardInfo
		var counter uint32
		switch h.Type {
		case wire.TypeShard:
			if si, err = wire.ParseShardInfo(b); err != nil {
				return
			}
			if len(b) < wire.ShardHeaderLen+wire.TagLen {
				t.Fatalf("ParseShardInfo accepted %d bytes, fewer than a header and a tag", len(b))
			}
			if si.Block == 0 || si.Block > wire.MaxBlockNo || si.K == 0 || si.K > wire.MaxBlockShards || si.Index >= wire.MaxShards || si.Sent < si.K || si.Sent > wire.MaxShards {
				t.Fatalf("ParseShardInfo(%x) = %+v, out of bounds", b, si)
			}
		case wire.TypeHeartbeat:
			if counter, err = wire.ParseHeartbeatCounter(b); err != nil {
				return
			}
			if len(b) < wire.HeartbeatHeaderLen+wire.TagLen || counter == 0 {
				t.Fatalf("ParseHeartbeatCounter(%d bytes) = %d, want a counter ≥ 1 and room for a tag", len(b), counter)
			}
		default:
			t.Fatalf("ParseSealedHeader(%x) = type %d, want shard or heartbeat", b, h.Type)
		}
		if re := reencodeSealed(h, si, counter, b); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}

// FuzzParseNack decodes its input both as a NACK packet's cleartext
// header and as a NACK's (opened) body.
func FuzzParseNack(f *testing.F) {
	f.Add(sampleNackPacket())
	body, err := wire.AppendNackBody(nil, sampleNack())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(rawNackBody(wire.MaxNackEntries, nackEntries(wire.MaxNackEntries)...))
	f.Add(rawNackBodySC(0, 1, 1, wire.NackEntry{Block: 1, Missing: 1}))
	f.Add(rawNackBodySC(1, 0, 1, wire.NackEntry{Block: 1, Missing: 1}))
	var n wire.Nack // reused across inputs, as a receive loop does
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := wire.ParseNackHeader(b); err == nil {
			if len(b) < wire.NackHeaderLen+wire.NonceXLen+wire.TagLen {
				t.Fatalf("ParseNackHeader accepted %d bytes, fewer than a header, a nonce and a tag", len(b))
			}
			if re := append(wire.AppendNackHeader(nil, h), b[wire.NackHeaderLen+wire.NonceXLen:]...); !bytes.Equal(re, b) {
				t.Fatalf("re-encoding of header %x = %x, want the same bytes", b, re)
			}
		}
		if err := wire.ParseNackBody(b, &n); err != nil {
			return
		}
		if len(n.Entries) == 0 || len(n.Entries) > wire.MaxNackEntries {
			t.Fatalf("ParseNackBody(%x) = %d entries, out of bounds", b, len(n.Entries))
		}
		if n.Session == 0 || n.Counter == 0 {
			t.Fatalf("ParseNackBody(%x) accepted session %d, counter %d", b, n.Session, n.Counter)
		}
		for _, e := range n.Entries {
			if e.Block == 0 || e.Missing == 0 {
				t.Fatalf("ParseNackBody(%x) accepted entry %+v", b, e)
			}
		}
		re, err := wire.AppendNackBody(nil, &n)
		if err != nil {
			t.Fatalf("AppendNackBody(ParseNackBody(%x)) = %v, want nil", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of body %x = %x, want the same bytes", b, re)
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	for _, recs := range [][]wire.Record{sampleRecords()[:1], sampleRecords(), benchRecs(8), manyRecords(wire.MaxRecords)} {
		_, pkt := encodeBatch(f, 1, recs)
		f.Add(pkt)
	}
	var recs []wire.Record // reused across inputs, as a receive loop does
	f.Fuzz(func(t *testing.T, b []byte) {
		bt, err := wire.ParseBatch(b, recs)
		if err != nil {
			return
		}
		recs = bt.Records
		if len(b) > wire.MaxBatch || len(bt.Records) == 0 || bt.First == 0 {
			t.Fatalf("ParseBatch accepted %d bytes, %d records at sequence %d", len(b), len(bt.Records), bt.First)
		}
		if len(bt.Signed) != len(b)-wire.SigLen || !bytes.Equal(bt.Signed, b[:len(bt.Signed)]) {
			t.Fatalf("Signed = %x, want all but the last %d bytes of %x", bt.Signed, wire.SigLen, b)
		}
		re, err := reencodeBatch(&bt)
		if err != nil {
			t.Fatalf("AppendBatchBody(ParseBatch(%x)) = %v, want nil", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
		// A receiver's interning of nicks changes nothing but where
		// their strings come from.
		nicks := map[string]string{}
		interned, err := wire.ParseBatchNicks(b, nil, func(n []byte) string {
			if s, ok := nicks[string(n)]; ok {
				return s
			}
			nicks[string(n)] = string(n)
			return string(n)
		})
		if err != nil || len(interned.Records) != len(bt.Records) {
			t.Fatalf("ParseBatchNicks(%x) = %d records, %v; ParseBatch gave %d", b, len(interned.Records), err, len(bt.Records))
		}
		for i, r := range interned.Records {
			if r != bt.Records[i] {
				t.Fatalf("ParseBatchNicks record %d = %+v, ParseBatch's %+v", i, r, bt.Records[i])
			}
		}
	})
}

func FuzzParseFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, err := wire.AppendFrame(nil, fr)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 2000 {
			f.Add(b[4:])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wire.ParseFrame(b)
		if err != nil {
			return
		}
		re, err := reencodeFrame(fr)
		if err != nil {
			t.Fatalf("AppendFrame(ParseFrame(%x)) = %v, want nil", b, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}

// FuzzReadFrame reads a stream of frames with one reused buffer, as a
// session does, checking the length prefix handling as well as the bodies.
func FuzzReadFrame(f *testing.F) {
	var stream []byte
	for _, fr := range sampleFrames() {
		b, err := wire.AppendFrame(nil, fr)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 200 {
			f.Add(b)
			stream = append(stream, b...)
		}
	}
	f.Add(stream)
	f.Add(binary.BigEndian.AppendUint32(nil, wire.MaxFrame+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var buf []byte
		for {
			start := len(b) - r.Len()
			var fr wire.Frame
			var err error
			fr, buf, err = wire.ReadFrame(r, buf)
			if errors.Is(err, io.EOF) {
				if start != len(b) {
					t.Fatalf("ReadFrame = %v at offset %d of %d, want io.EOF only between frames", err, start, len(b))
				}
				return
			}
			if err != nil {
				return
			}
			if len(buf) > wire.MaxFrame {
				t.Fatalf("ReadFrame buffer grew to %d bytes, more than MaxFrame", len(buf))
			}
			re, err := wire.AppendFrame(nil, fr)
			if err != nil {
				t.Fatalf("AppendFrame(ReadFrame(%x)) = %v, want nil", b[start:], err)
			}
			if end := len(b) - r.Len(); !bytes.Equal(re, b[start:end]) {
				t.Fatalf("re-encoding of %x = %x, want the same bytes", b[start:end], re)
			}
		}
	})
}

// FuzzParseBlockBatch decodes a batch in a block's form (NextBlockBatch's
// body), as a member does: what it accepts re-encodes from its records
// to the same bytes, so that a block's signature covers one encoding.
func FuzzParseBlockBatch(f *testing.F) {
	for _, recs := range [][]wire.Record{sampleRecords(), benchRecs(8), soloRecords(1), soloRecords(40), manyRecords(wire.MaxRecords)} {
		body, _ := encodeBatch(f, 1, recs)
		f.Add(wire.AppendBlockBatch(nil, body)[2:])
	}
	var recs []wire.Record
	f.Fuzz(func(t *testing.T, b []byte) {
		bt, err := wire.ParseBlockBatch(b, recs, nil)
		if err != nil {
			return
		}
		recs = bt.Records
		if len(bt.Records) == 0 || bt.First == 0 || bt.Signed != nil {
			t.Fatalf("ParseBlockBatch accepted %d records at sequence %d, Signed %x", len(bt.Records), bt.First, bt.Signed)
		}
		body, err := wire.AppendBatchBody(nil, bt.First, bt.Records)
		if err != nil {
			t.Fatalf("AppendBatchBody(ParseBlockBatch(%x)) = %v, want nil", b, err)
		}
		if re := wire.AppendBlockBatch(nil, body); !bytes.Equal(re, appendLen16(nil, b)) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes behind their length", b, re)
		}
	})
}

// appendLen16 appends b behind its length, as a block holds a batch.
func appendLen16(dst, b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(b))), b...)
}

// FuzzSplitBlock splits a decoded block's payload into its batches and
// how they are authenticated, as a member does: every batch body it
// returns is within bounds, a signature is SigLen bytes, MACs a whole
// number of slots within MaxMACSlots, and the payload re-encodes from
// them to the same bytes.
func FuzzSplitBlock(f *testing.F) {
	sig := bytes.Repeat([]byte{0x5a}, wire.SigLen)
	batches := appendLen16(appendLen16(nil, []byte("one batch")), []byte("another"))
	f.Add(wire.AppendBlockSig(slices.Clone(batches), sig))
	f.Add(wire.AppendBlockSig([]byte{0, 0}, sig))
	f.Add(wire.AppendBlockSig([]byte{0xff, 0xff, 1}, sig))
	f.Add(append(slices.Clone(batches), sig...)) // no kind: version 3's
	for _, n := range []int{1, 3, wire.MaxMACSlots} {
		b, err := wire.AppendBlockMACs(slices.Clone(batches), bytes.Repeat([]byte{0xa5}, n*wire.MACLen))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(append(slices.Clone(batches), 0, wire.AuthMACs))
	f.Add(append(slices.Clone(batches), wire.MaxMACSlots+1, wire.AuthMACs))
	f.Add(append(slices.Clone(batches), 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		batches, auth, err := wire.SplitBlock(b)
		if err != nil {
			return
		}
		var re []byte
		switch {
		case auth.Sig != nil && auth.MACs == nil:
			if len(auth.Sig) != wire.SigLen || len(batches)+wire.BlockSigLen != len(b) {
				t.Fatalf("SplitBlock(%d bytes) = %d bytes of batches, %d of signature", len(b), len(batches), len(auth.Sig))
			}
		case auth.MACs != nil && auth.Sig == nil:
			n := len(auth.MACs) / wire.MACLen
			if n == 0 || n > wire.MaxMACSlots || len(auth.MACs)%wire.MACLen != 0 || len(batches)+wire.BlockMACsLen(n) != len(b) {
				t.Fatalf("SplitBlock(%d bytes) = %d bytes of batches, %d of MACs", len(b), len(batches), len(auth.MACs))
			}
			if auth.MAC(uint8(n-1)) == nil || auth.MAC(uint8(n)) != nil {
				t.Fatalf("SplitBlock(%d bytes): %d MACs, but slot %d's is %x and slot %d's %x", len(b), n, n-1, auth.MAC(uint8(n-1)), n, auth.MAC(uint8(n)))
			}
		default:
			t.Fatalf("SplitBlock(%d bytes) = signature %x and MACs %x: want one", len(b), auth.Sig, auth.MACs)
		}
		if len(batches) < 2 {
			t.Fatalf("SplitBlock(%d bytes) = %d bytes of batches", len(b), len(batches))
		}
		for rest := batches; len(rest) > 0; {
			body, after, err := wire.NextBlockBatch(rest)
			if err != nil {
				return
			}
			if len(body) == 0 || len(body) > wire.MaxBatch-wire.SigLen || len(after) >= len(rest) {
				t.Fatalf("NextBlockBatch(%x) = body of %d bytes, %d bytes left of %d", rest, len(body), len(after), len(rest))
			}
			re = appendLen16(re, body)
			rest = after
		}
		if auth.Sig != nil {
			re = wire.AppendBlockSig(re, auth.Sig)
		} else if re, err = wire.AppendBlockMACs(re, auth.MACs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}
