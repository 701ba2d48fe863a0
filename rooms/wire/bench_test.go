package wire_test

import (
	"fmt"
	"strings"
	"testing"

	"meshd/rooms/wire"
)

// The encoders and decoders on the per-packet path, with -benchmem: a
// shard's cleartext header (every packet), and a batch body (every block)
// of 1, 8 and 32 200-byte lines.

func BenchmarkShardHeader(b *testing.B) {
	h := wire.SealedHeader{Room: wire.RoomTag{1, 2, 3}, Epoch: 1 << 7}
	si := wire.ShardInfo{Block: 77, Index: 2, K: 3, Sent: 5}
	buf := make([]byte, 0, wire.MaxPacket)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = wire.AppendShardHeader(buf[:0], h, si)
		}
	})
	pkt := append(wire.AppendShardHeader(nil, h, si), make([]byte, 300+wire.TagLen)...)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.ParseSealedHeader(pkt); err != nil {
				b.Fatal(err)
			}
			if _, err := wire.ParseShardInfo(pkt); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchRecs(n int) []wire.Record {
	recs := make([]wire.Record, n)
	for i := range recs {
		recs[i] = wire.Record{Kind: wire.KindMessage, KeyID: [wire.KeyIDLen]byte{byte(i % 4)}, Nick: fmt.Sprintf("nick%d", i%4), Text: strings.Repeat("m", 200)}
	}
	return recs
}

func BenchmarkBatch(b *testing.B) {
	for _, lines := range []int{1, 8, 32} {
		recs := benchRecs(lines)
		buf := make([]byte, 0, wire.MaxBatch)
		b.Run(fmt.Sprintf("encode/lines=%d", lines), func(b *testing.B) {
			b.SetBytes(int64(200 * lines))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = wire.AppendBatchBody(buf[:0], 1, recs); err != nil {
					b.Fatal(err)
				}
			}
			// A signed batch's bytes per 200-byte line.
			b.ReportMetric(float64(len(buf)+wire.SigLen)/float64(lines), "B/line")
		})
		body, err := wire.AppendBatchBody(nil, 1, recs)
		if err != nil {
			b.Fatal(err)
		}
		batch := append(body, make([]byte, wire.SigLen)...)

		// A receiver's way: one records slice reused, nicks interned, so
		// a line costs the string of its text.
		nicks := map[string]string{}
		intern := func(b []byte) string {
			if s, ok := nicks[string(b)]; ok {
				return s
			}
			s := string(b)
			nicks[s] = s
			return s
		}
		out := make([]wire.Record, 0, lines)
		b.Run(fmt.Sprintf("decode/lines=%d", lines), func(b *testing.B) {
			b.SetBytes(int64(200 * lines))
			b.ReportAllocs()
			for b.Loop() {
				bt, err := wire.ParseBatchNicks(batch, out, intern)
				if err != nil {
					b.Fatal(err)
				}
				out = bt.Records[:0]
			}
		})
	}
}

// TestParseBatchNicks: the nick function makes each sender's nick, once
// per batch, and the records are those ParseBatch returns.
func TestParseBatchNicks(t *testing.T) {
	recs := benchRecs(8)
	body, err := wire.AppendBatchBody(nil, 5, recs)
	if err != nil {
		t.Fatal(err)
	}
	batch := append(body, make([]byte, wire.SigLen)...)
	calls := 0
	got, err := wire.ParseBatchNicks(batch, nil, func(b []byte) string { calls++; return "<" + string(b) + ">" })
	if err != nil {
		t.Fatal(err)
	}
	want, err := wire.ParseBatch(batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	// benchRecs(8) has 4 senders.
	if calls != 4 || len(got.Records) != len(want.Records) {
		t.Fatalf("ParseBatchNicks: %d nick calls, %d records; want 4, %d", calls, len(got.Records), len(want.Records))
	}
	for i, r := range got.Records {
		w := want.Records[i]
		if r.Nick != "<"+w.Nick+">" || r.Text != w.Text || r.KeyID != w.KeyID || r.Kind != w.Kind {
			t.Errorf("record %d = %+v, want %+v with the nick from the function", i, r, w)
		}
	}
}

// BenchmarkBlockBatch: a one-sender batch into a block's form, as the
// host adds it to a block (the sender indexes left out), and out of it,
// as a member takes it.
func BenchmarkBlockBatch(b *testing.B) {
	for _, lines := range []int{1, 32} {
		recs := benchRecs(lines)
		for i := range recs {
			recs[i].KeyID, recs[i].Nick = [wire.KeyIDLen]byte{7}, "solo"
		}
		body, err := wire.AppendBatchBody(nil, 1, recs)
		if err != nil {
			b.Fatal(err)
		}
		blk := make([]byte, 0, len(body)+2)
		b.Run(fmt.Sprintf("encode/lines=%d", lines), func(b *testing.B) {
			b.SetBytes(int64(200 * lines))
			b.ReportAllocs()
			for b.Loop() {
				blk = wire.AppendBlockBatch(blk[:0], body)
			}
			b.ReportMetric(float64(len(blk)-2)/float64(lines), "B/line")
		})
		in, _, err := wire.NextBlockBatch(blk)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]wire.Record, 0, lines)
		b.Run(fmt.Sprintf("decode/lines=%d", lines), func(b *testing.B) {
			b.SetBytes(int64(200 * lines))
			b.ReportAllocs()
			for b.Loop() {
				bt, err := wire.ParseBlockBatch(in, out, func(n []byte) string { return "solo" })
				if err != nil {
					b.Fatal(err)
				}
				out = bt.Records[:0]
			}
		})
	}
}
