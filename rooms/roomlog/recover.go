package roomlog

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// recover loads the segment files in order, repairing or setting aside
// those that are not intact, and reopens the last one for appending.
func (l *Log) recover() error {
	firsts, err := segmentFiles(l.dir)
	if err != nil {
		return err
	}
	for i, first := range firsts {
		last := i == len(firsts)-1
		kept, err := l.load(filepath.Join(l.dir, segName(first)), first, last)
		if err != nil {
			return err
		}
		// Appending goes on in the newest file only if it is intact: after
		// a set-aside or removed one, a new segment starts.
		if last && kept {
			f, err := os.OpenFile(l.segs[len(l.segs)-1].path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return fmt.Errorf("roomlog: %w", err)
			}
			l.file = f
		}
	}
	return nil
}

// load reads the segment file at path, named by sequence number first,
// and adds its entries to the log. A torn tail of the last segment is cut
// off; any other damage sets the segment aside. It reports whether the
// segment was added.
func (l *Log) load(path string, first uint64, last bool) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("roomlog: %w", err)
	}
	r := scan(b, first, l.next)
	switch {
	case r.err == nil:
	case last && r.torn:
		if err := os.Truncate(path, int64(r.good)); err != nil {
			return false, fmt.Errorf("roomlog: cut torn tail: %w", err)
		}
		l.stats.TruncatedBytes += int64(len(b) - r.good)
		l.logger.Warn("cut off a torn tail", "file", path, "bytes", len(b)-r.good, "err", r.err)
	default:
		if err := os.Rename(path, path+corruptExt); err != nil {
			return false, fmt.Errorf("roomlog: set aside corrupt segment: %w", err)
		}
		l.stats.Quarantined++
		// The records of a set-aside segment may have been sent, so they
		// must not be numbered again: its name, and the valid entries it
		// starts with, say how far they went at least.
		l.next = max(l.next, first+1, r.next)
		l.logger.Warn("set aside a corrupt segment", "file", path+corruptExt, "err", r.err)
		return false, nil
	}
	if r.good == 0 {
		// Created, but the process died before its first entry landed.
		if err := os.Remove(path); err != nil {
			return false, fmt.Errorf("roomlog: remove empty segment: %w", err)
		}
		return false, nil
	}
	l.segs = append(l.segs, &segment{path: path, buf: b[:r.good], ents: r.ents, records: r.records})
	l.records += r.records
	l.next = r.next
	l.trim()
	return true, nil
}

// segmentFiles returns the sequence numbers naming the segment files in
// dir, in order.
func segmentFiles(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("roomlog: %w", err)
	}
	var firsts []uint64
	for _, de := range des {
		if first, ok := parseSegName(de.Name()); ok && de.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)
	return firsts, nil
}
