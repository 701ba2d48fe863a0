package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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

func FuzzParseDataHeader(f *testing.F) {
	f.Add(sampleDataPacket())
	f.Add(wire.AppendDataHeader(make([]byte, 0, wire.DataHeaderLen+wire.TagLen), wire.DataHeader{})[:wire.DataHeaderLen+wire.TagLen-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, sealed, err := wire.ParseDataHeader(b)
		if err != nil {
			return
		}
		if len(sealed) < wire.TagLen {
			t.Fatalf("ParseDataHeader(%x) left %d sealed bytes, fewer than a tag", b, len(sealed))
		}
		re := append(wire.AppendDataHeader(nil, h), sealed...)
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes", b, re)
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	for _, recs := range [][]wire.Record{nil, sampleRecords()} {
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
