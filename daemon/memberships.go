package daemon

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"meshd/rooms"
)

// membershipsFile, in the state directory, lists the rooms this daemon
// has joined and how far it got in each, so that after a restart it
// rejoins them and resumes where it stopped.
const membershipsFile = "memberships.json"

type membership struct {
	Ref  string `json:"ref"`
	Nick string `json:"nick"`
	Next uint64 `json:"next"` // the first sequence number not yet delivered
	// PassphraseKey, for a passphrase room, is the key derived from its
	// passphrase and bound to the room (rooms.PassphraseKey), in hex: what
	// a rejoin proves, without the passphrase being kept.
	PassphraseKey string `json:"passphrase_key,omitempty"`
}

func (d *Daemon) membershipsPath() string { return filepath.Join(d.cfg.StateDir, membershipsFile) }

// saveMemberships writes the memberships if they changed since the last
// write. Flash wears, so it is called at joins and leaves, at shutdown and
// every saveInterval, not per line; after a crash the member resumes a
// little early, and its user may see up to saveInterval of lines again,
// each at its own sequence number.
func (d *Daemon) saveMemberships() {
	var ms []membership
	for _, m := range d.memberList() {
		mb := membership{Ref: m.Ref(), Nick: m.Nick(), Next: m.LastSeq() + 1}
		if k := m.PassphraseKey(); k != nil {
			mb.PassphraseKey = hex.EncodeToString(k[:])
		}
		ms = append(ms, mb)
	}
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.Slice(ms, func(i, j int) bool { return ms[i].Ref < ms[j].Ref })
	d.mu.Lock()
	same := slices.Equal(ms, d.saved)
	d.mu.Unlock()
	if same {
		return
	}
	b, err := json.Marshal(ms)
	if err == nil {
		err = writeFileAtomic(d.membershipsPath(), b)
	}
	if err != nil {
		d.log.Warn("cannot save memberships", "err", err)
		return
	}
	d.mu.Lock()
	d.saved = ms
	d.mu.Unlock()
}

func (d *Daemon) loadMemberships() ([]membership, error) {
	b, err := os.ReadFile(d.membershipsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ms []membership
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("%s: %w", d.membershipsPath(), err)
	}
	d.mu.Lock()
	d.saved = ms
	d.mu.Unlock()
	return ms, nil
}

// rejoin joins a saved membership again once its room is announced,
// resuming after the last line delivered before the restart. A room
// beyond the reach of announcements is searched for, 2 s after the start
// and every 10 s after that. It gives up only when ctx ends or the host
// refuses.
// A rejoin waits rejoinFirstSearch for the room's announcement before it
// searches, then searches every rejoinSearchEvery.
const (
	rejoinFirstSearch = 2 * time.Second
	rejoinSearchEvery = 10 * time.Second
)

func (d *Daemon) rejoin(ctx context.Context, ms membership) {
	log := d.log.With("room", ms.Ref)
	var cred rooms.Credential
	if ms.PassphraseKey != "" {
		b, err := hex.DecodeString(ms.PassphraseKey)
		if err != nil || len(b) != 32 {
			log.Warn("cannot rejoin room: its saved passphrase key is damaged; join it again with the passphrase")
			return
		}
		key := [32]byte(b)
		cred.Key = &key
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	nextSearch := time.Now().Add(rejoinFirstSearch)
	for {
		kn, err := d.dir.Resolve(ms.Ref)
		if errors.Is(err, rooms.ErrUnknownRoom) && !time.Now().Before(nextSearch) {
			if _, serr := d.search(ctx, ms.Ref, 0); serr == nil {
				kn, err = d.dir.Resolve(ms.Ref)
			}
			nextSearch = time.Now().Add(rejoinSearchEvery)
		}
		if err == nil {
			m, err := rooms.Join(ctx, d.memberConfig(), kn, ms.Nick, ms.Next, cred)
			switch {
			case err == nil:
				if !d.addMember(m) {
					m.Close()
					d.leaveData(m.Group().Addr())
				}
				log.Info("rejoined room", "resume", ms.Next)
				return
			case errors.Is(err, rooms.ErrRefused), errors.Is(err, rooms.ErrHostKeyMismatch):
				log.Warn("cannot rejoin room", "err", err)
				return
			}
			log.Debug("rejoin", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addMember records a new membership; false if one for the room exists.
func (d *Daemon) addMember(m *rooms.Member) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.members[m.ID()]; dup {
		return false
	}
	d.members[m.ID()] = m
	return true
}
