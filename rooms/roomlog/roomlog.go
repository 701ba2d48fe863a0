// Package roomlog is a room host's sequenced log: CRC-framed append-only
// segment files holding the newest signed batches, repaired after a crash.
//
// The host of a room numbers its records and sends them in batches. It
// keeps the newest batches to serve members that missed them, and after
// its process is killed and restarted it must go on numbering after the
// last batch it stored and serve that history again. The log lives in
// tmpfs by default, which survives a process crash but not a reboot; an
// operator may put it on disk instead.
//
// # Durability
//
// Append writes each entry with one write() and no fsync. The page cache
// (or tmpfs) keeps what was written when the process dies, so a kill -9
// loses at most an entry whose write() had not returned, and Append had
// not returned either, so its records were never sent. A power loss or
// kernel crash may lose the newest entries, or leave zeros or garbage
// where they were; Open cuts them off. The log then knows fewer sequence
// numbers than the host used, so the host must not rely on Next alone to
// avoid reusing them: it reserves sequence numbers in blocks in a store
// that it does sync, and jumps past the reservation after a reboot.
//
// # Files
//
// Dir holds segment files named by the first sequence number they hold,
// in 20 decimal digits: 00000000000000000042.seg. Dir is created with mode
// 0700, segments with mode 0600. A segment is a run of entries, each
//
//	offset  size  field (integers big-endian)
//	0       4     length: bytes after the CRC, 10+len(batch); 10 ≤ length ≤ 10+MaxBatch
//	4       4     CRC-32C (Castagnoli) of the length bytes that follow
//	8       8     first: sequence number of the batch's first record, ≥ 1
//	16      2     count: records in the batch, ≥ 1
//	18      n     batch: n = length-10 bytes, opaque to the log
//
// The first entry of a segment starts at the sequence number the file is
// named by, and every entry starts after the last record of the entry
// before it, in the same segment or in the previous one. A new segment is
// started once the current one would grow past Options.SegmentBytes.
// Whole segments are deleted, oldest first, while the newer ones hold at
// least Options.Keep records.
//
// # Recovery
//
// Open reads the segments in order and checks every entry: its length
// is within bounds before anything is read by it, its CRC matches, its
// count and first are possible, and it follows the entries before it.
// In the last segment, an invalid tail that an interrupted write can
// leave (an entry cut short, a last entry failing its CRC, or zeros to the
// end of the file) is cut off: the file is truncated after the last valid
// entry, and Stats.TruncatedBytes counts what was cut. Any other invalid
// entry, in the last segment or an earlier one, sets the whole segment
// aside: it is renamed with a .corrupt suffix and counted in
// Stats.Quarantined, and the log goes on with the other segments. Next
// still counts the records the set-aside segment was known to hold, so
// they are not numbered again. Files with other names (temporary files,
// set-aside segments) are left alone.
package roomlog

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Options configures a Log. The zero value is an in-memory log with the
// default limits.
type Options struct {
	// Dir holds the segment files; "" keeps the log in memory only, so
	// nothing survives a restart.
	Dir string
	// Keep is how many of the newest records the log retains at least.
	// Older segments are deleted, so it holds at most about one segment
	// more. Default 1000.
	Keep int
	// SegmentBytes is the size past which a new segment is started.
	// Default 256 KiB.
	SegmentBytes int
	Logger       *slog.Logger
}

const (
	defaultKeep         = 1000
	defaultSegmentBytes = 256 << 10
	minSegmentCap       = 4 << 10
)

// Errors that Append returns, wrapped.
var (
	ErrInvalid    = errors.New("roomlog: invalid batch")
	ErrOutOfOrder = errors.New("roomlog: batch before the end of the log")
	ErrClosed     = errors.New("roomlog: log closed")
)

// Stats describes what a Log holds and what Open repaired.
type Stats struct {
	Entries        int   // batches held
	Records        int   // records in them
	Bytes          int64 // framed bytes held in RAM, as in the segment files
	Segments       int
	TruncatedBytes int64 // torn tails cut off at Open
	Quarantined    int   // segments set aside at Open as corrupt
}

// Log is a room host's sequenced log. Reads are served from RAM; the
// files exist to recover it. Safe for concurrent use.
type Log struct {
	dir          string
	keep         int
	segmentBytes int
	logger       *slog.Logger

	mu      sync.Mutex
	segs    []*segment // oldest first; none is empty
	next    uint64     // one past the highest sequence number stored or set aside
	records int
	file    *os.File // the last segment, open for appending; nil in memory, or if it failed
	closed  bool
	stats   Stats // only the counts from Open; the rest is computed
}

// segment is one segment file's entries, held in RAM byte for byte as in
// the file. Its bytes are never changed once appended, so a reader can
// use them outside the lock.
type segment struct {
	path    string // "" if the segment has no file
	buf     []byte
	ents    []entry
	records int
}

func (s *segment) first() uint64 { return s.ents[0].first }
func (s *segment) next() uint64  { return s.ents[len(s.ents)-1].next() }

// fit moves the segment's entries to a buffer of their size, if grow left
// spare room after them. Readers holding slices of the old buffer keep
// them: its bytes are not changed, only let go of.
func (s *segment) fit() {
	if cap(s.buf) == len(s.buf) {
		return
	}
	b := make([]byte, len(s.buf))
	copy(b, s.buf)
	s.buf = b
}

// Open opens the log in opts.Dir, creating the directory if need be, and
// recovers what the segment files hold, repairing them as the package
// documentation describes.
func Open(opts Options) (*Log, error) {
	l := &Log{
		dir:          opts.Dir,
		keep:         opts.Keep,
		segmentBytes: opts.SegmentBytes,
		logger:       opts.Logger,
	}
	if l.keep <= 0 {
		l.keep = defaultKeep
	}
	if l.segmentBytes <= 0 {
		l.segmentBytes = defaultSegmentBytes
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.dir == "" {
		return l, nil
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("roomlog: %w", err)
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	return l, nil
}

// Append adds a batch holding the records first..first+count-1. first
// must not be below Next; a jump forward leaves a gap that the caller has
// declared. The batch is copied and written to the segment file with one
// write() before Append returns. If the write fails, the batch is still
// held in RAM and served, the error is returned, and the next Append
// starts a new segment file.
func (l *Log) Append(first uint64, count int, batch []byte) error {
	if first == 0 || count < 1 || count > MaxCount || first+uint64(count) < first || len(batch) > MaxBatch {
		return fmt.Errorf("%w: %d records at %d in %d bytes", ErrInvalid, count, first, len(batch))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if first < l.next {
		return fmt.Errorf("%w: %d records at %d, log ends at %d", ErrOutOfOrder, count, first, l.next)
	}
	size := headerLen + fixedLen + len(batch)
	var err error
	if l.needSegment(size) {
		err = l.startSegment(first)
	}
	s := l.segs[len(l.segs)-1]
	off := len(s.buf)
	s.buf = appendEntry(l.grow(s.buf, size), first, uint16(count), batch)
	s.ents = append(s.ents, entry{first: first, count: uint16(count), off: off + headerLen + fixedLen, end: len(s.buf)})
	s.records += count
	l.records += count
	l.next = first + uint64(count)
	if l.file != nil {
		if _, werr := l.file.Write(s.buf[off:]); werr != nil {
			err = l.abandonFile(off, werr)
		}
	}
	l.trim()
	return err
}

// grow returns buf with room for n more bytes. It doubles the buffer up
// to the size at which a segment rolls: copies then cost no more than the
// segment itself, and a quiet room does not hold a whole segment's worth
// of RAM from its first entry on.
func (l *Log) grow(buf []byte, n int) []byte {
	need := len(buf) + n
	if need <= cap(buf) {
		return buf
	}
	grown := make([]byte, len(buf), max(need, min(2*cap(buf), l.segmentBytes), minSegmentCap))
	copy(grown, buf)
	return grown
}

// needSegment reports whether an entry of size bytes goes to a new segment.
func (l *Log) needSegment(size int) bool {
	if len(l.segs) == 0 || l.dir != "" && l.file == nil {
		return true
	}
	n := len(l.segs[len(l.segs)-1].buf)
	return n+size > l.segmentBytes
}

// startSegment starts a segment whose first entry is at first. The
// segment is held in RAM even if its file cannot be created, so the
// batch is served all the same. The segment before it stops growing, so
// it lets go of the spare room grow left it.
func (l *Log) startSegment(first uint64) error {
	if n := len(l.segs); n > 0 {
		l.segs[n-1].fit()
	}
	s := &segment{}
	l.segs = append(l.segs, s)
	if l.dir == "" {
		return nil
	}
	l.closeFile()
	path := filepath.Join(l.dir, segName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("roomlog: %w", err)
	}
	s.path, l.file = path, f
	return nil
}

// abandonFile gives up on the last segment's file after a failed write,
// cutting off what part of the entry may have landed so that the file
// still ends at a whole entry and is not set aside at the next Open.
func (l *Log) abandonFile(size int, werr error) error {
	name := l.file.Name()
	if err := l.file.Truncate(int64(size)); err != nil {
		l.logger.Warn("cannot cut off a failed write", "file", name, "err", err)
	}
	l.closeFile()
	return fmt.Errorf("roomlog: %w", werr)
}

func (l *Log) closeFile() {
	if l.file == nil {
		return
	}
	if err := l.file.Close(); err != nil {
		l.logger.Warn("close segment", "err", err)
	}
	l.file = nil
}

// trim deletes the oldest segments while the others hold Keep records.
func (l *Log) trim() {
	for len(l.segs) > 1 && l.records-l.segs[0].records >= l.keep {
		s := l.segs[0]
		l.segs[0] = nil
		l.segs = l.segs[1:]
		l.records -= s.records
		if s.path == "" {
			continue
		}
		// A failed delete costs only disk space: the segment is re-read,
		// and trimmed again, at the next Open.
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.logger.Warn("delete old segment", "err", err)
		}
	}
}

// Release lets go of the spare room at the end of the newest segment's
// buffer, which grow doubles: up to half of it, held for appends that a
// quiet room may not make for a long while. Its host calls it once the
// room has been quiet for some seconds, not at every pause, since the
// next Append copies the segment into a larger buffer again.
func (l *Log) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.segs); n > 0 {
		l.segs[n-1].fit()
	}
}

// Next returns one past the highest sequence number the log has stored,
// including any in segments set aside as corrupt, or 0 if it never held
// any. The next Append must start there or later.
func (l *Log) Next() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Oldest returns the lowest sequence number still held, or 0 if the log
// holds none.
func (l *Log) Oldest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.segs[0].first()
}

// Read calls yield with each batch holding any sequence number at or
// after from, oldest first, until yield returns false. The caller must
// not modify batch, but may keep it after yield returns, for instance
// queued to send: the log never overwrites bytes it has appended, it only
// lets go of them. The log is not locked while yield runs, so a slow
// reader does not hold up Append: a batch appended during Read may be
// yielded, and if batches Read has yet to yield are trimmed meanwhile, it
// stops early rather than skip them.
func (l *Log) Read(from uint64, yield func(first uint64, count int, batch []byte) bool) {
	var chunk [16]span
	for resume := false; ; resume = true {
		n := l.collect(from, resume, chunk[:])
		for _, b := range chunk[:n] {
			if !yield(b.first, b.count, b.batch) {
				return
			}
		}
		if n < len(chunk) {
			return
		}
		last := chunk[n-1]
		from = last.first + uint64(last.count)
	}
}

type span struct {
	first uint64
	count int
	batch []byte
}

// collect fills out with the first batches holding a sequence number at
// or after from, and returns how many it found. If resuming after the
// batch ending at from, it finds none if the next batch has been trimmed.
func (l *Log) collect(from uint64, resume bool, out []span) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 || resume && l.segs[0].first() > from {
		return 0
	}
	n := 0
	si := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].next() > from })
	for _, s := range l.segs[si:] {
		ei := sort.Search(len(s.ents), func(i int) bool { return s.ents[i].next() > from })
		for _, e := range s.ents[ei:] {
			if n == len(out) {
				return n
			}
			// Capped, so that appending to it cannot reach the next entry.
			out[n] = span{e.first, int(e.count), s.buf[e.off:e.end:e.end]}
			n++
		}
	}
	return n
}

// Stats returns what the log holds and what Open repaired.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Segments = len(l.segs)
	st.Records = l.records
	for _, s := range l.segs {
		st.Entries += len(s.ents)
		st.Bytes += int64(len(s.buf))
	}
	return st
}

// Close closes the segment file. Appends fail after it, and reads find
// nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.segs = nil
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	if err != nil {
		return fmt.Errorf("roomlog: %w", err)
	}
	return nil
}
