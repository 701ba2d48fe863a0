package roomlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
)

// Limits of one entry. The length field is checked against them before
// anything else, so no file content can make Open allocate or slice past
// what the file holds.
const (
	MaxBatch = 24 << 10       // bytes in one batch: a signed batch's bound (wire.MaxBatch)
	MaxCount = math.MaxUint16 // records in one batch

	headerLen = 8                   // length, CRC
	fixedLen  = 8 + 2               // first, count: the part of the length that is not the batch
	maxLength = fixedLen + MaxBatch // largest valid length field
)

const (
	segSuffix  = ".seg"
	segDigits  = 20 // enough for any uint64, so names sort as numbers do
	corruptExt = ".corrupt"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segName returns the file name of the segment whose first entry starts
// at sequence number first.
func segName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segDigits, first, segSuffix)
}

// parseSegName reports the sequence number a segment file is named by.
// Names are accepted only in the exact form segName writes, so one
// segment cannot hide under two names.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != segDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	return first, err == nil
}

// appendEntry appends one framed entry to b.
func appendEntry(b []byte, first uint64, count uint16, batch []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(fixedLen+len(batch)))
	b = binary.BigEndian.AppendUint32(b, 0) // the CRC, once the rest is in place
	b = binary.BigEndian.AppendUint64(b, first)
	b = binary.BigEndian.AppendUint16(b, count)
	b = append(b, batch...)
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+headerLen:], castagnoli))
	return b
}

// entry locates one batch inside its segment's buffer. Offsets rather
// than a slice, so an entry does not pin a buffer that append has since
// outgrown.
type entry struct {
	first    uint64
	count    uint16
	off, end int // the batch is buf[off:end]
}

func (e entry) next() uint64 { return e.first + uint64(e.count) }

// scanResult is what scan makes of one segment file.
type scanResult struct {
	ents    []entry
	records int
	good    int    // length of the valid prefix: whole, checked, in-order entries
	next    uint64 // one past the last record of the valid prefix, or the next scan was given
	err     error  // why the bytes after good are not valid; nil if there are none
	// torn reports that the invalid part is what an interrupted last
	// write leaves: an entry cut short, a last entry that fails its CRC,
	// or zeros where the file was extended but the data never landed.
	// Cutting it off repairs the file. Anything else is corruption.
	torn bool
}

var (
	errShort   = errors.New("entry cut short")
	errLength  = errors.New("length out of range")
	errCRC     = errors.New("CRC mismatch")
	errInvalid = errors.New("invalid entry")
)

// scan checks the entries of segment file b, named by sequence number
// name, in a log whose earlier segments end before sequence number next.
// It stops at the first entry that is not whole, not intact, or not after
// everything before it.
func scan(b []byte, name, next uint64) scanResult {
	r := scanResult{next: next}
	for r.good < len(b) {
		rest := b[r.good:]
		if len(rest) < headerLen {
			return r.fail(errShort, true)
		}
		n := binary.BigEndian.Uint32(rest)
		if n < fixedLen || n > maxLength {
			return r.fail(fmt.Errorf("%w: %d", errLength, n), allZero(rest))
		}
		size := headerLen + int(n)
		if size > len(rest) {
			return r.fail(errShort, true)
		}
		body := rest[headerLen:size]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(rest[4:]) {
			return r.fail(errCRC, size == len(rest) || allZero(rest))
		}
		e := entry{
			first: binary.BigEndian.Uint64(body),
			count: binary.BigEndian.Uint16(body[8:]),
			off:   r.good + headerLen + fixedLen,
			end:   r.good + size,
		}
		switch {
		case e.first == 0 || e.count == 0 || e.next() < e.first:
			return r.fail(fmt.Errorf("%w: %d records at %d", errInvalid, e.count, e.first), false)
		case len(r.ents) == 0 && e.first != name:
			return r.fail(fmt.Errorf("%w: segment %d starts at %d", errInvalid, name, e.first), false)
		case e.first < r.next:
			return r.fail(fmt.Errorf("%w: entry at %d goes back before %d", errInvalid, e.first, r.next), false)
		}
		r.ents = append(r.ents, e)
		r.records += int(e.count)
		r.next = e.next()
		r.good += size
	}
	return r
}

func (r scanResult) fail(err error, torn bool) scanResult {
	r.err = fmt.Errorf("at offset %d: %w", r.good, err)
	r.torn = torn
	return r
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
