package daemon

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"meshd/rooms"
)

// liveKeys are the keys Reload applies to a running daemon; every other
// changed key is reported as needing a restart. Moving a key here needs
// every reader of it to go through Daemon.running instead of d.cfg, or to
// be told by apply.
//
// log_level is applied by the caller: the daemon logs through the logger
// it was given, whose level cmd/meshd keeps in a slog.LevelVar. So is
// memory_limit, the process's (ApplyMemoryLimit).
//
// nick applies to the hosting user's lines in hosted rooms and to later
// joins; memberships keep the nick they joined with. member.path moves
// every membership within a second. room_lifetime goes out with the next
// announcement.
var liveKeys = map[string]bool{
	"log_level":                   true,
	"memory_limit":                true,
	"nick":                        true,
	"member.path":                 true,
	"discovery.announce_interval": true,
	"discovery.room_lifetime":     true,
	"discovery.peers":             true, // Reload hands them to rooms.Discovery
}

// reloadState is what Reload changes at run time. Its zero value is a
// daemon running its start-up configuration, d.cfg, which Reload never
// writes: the running configuration lives here instead.
type reloadState struct {
	serial sync.Mutex // held through a Reload, which may take a while

	mu      sync.Mutex
	started bool    // the timers run, so Run has opened the host and hosted cfg.Rooms
	cfg     *Config // the running configuration; nil means d.cfg
}

var errNotStarted = errors.New("meshd is still starting; nothing reloaded, send SIGHUP again once it runs")

// running returns the configuration the daemon runs: d.cfg with what
// Reload applied since.
func (d *Daemon) running() Config {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	return d.runningLocked()
}

func (d *Daemon) runningLocked() Config {
	if d.reload.cfg != nil {
		return *d.reload.cfg
	}
	return d.cfg
}

// announceInterval is the running discovery.announce_interval. The timers
// call it on every tick, and their first call marks the daemon started for
// Reload: the timers goroutine is started after Run has opened the sockets
// and the host, so Reload may use them from then on.
func (d *Daemon) announceInterval() time.Duration {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	d.reload.started = true
	return time.Duration(d.runningLocked().Discovery.Interval)
}

// Reload applies newCfg, a configuration from Load, to the running daemon
// as far as it can without a restart: the keys in liveKeys (log_level is
// for the caller to set), and rooms added to the [[room]] list, which
// start being hosted. It returns a line for each
// change applied and for each change that needs a restart (with the old and
// new values), in key order. Rooms removed from the list stay hosted and
// are reported as needing a restart. A changed access of a room in the
// list applies to joins from then on.
//
// An error means nothing was applied: newCfg is not valid, or Run has not
// started the daemon yet.
func (d *Daemon) Reload(newCfg Config) (applied, needRestart []string, err error) {
	if err := newCfg.Validate(); err != nil {
		return nil, nil, err
	}
	d.reload.serial.Lock()
	defer d.reload.serial.Unlock()
	d.reload.mu.Lock()
	started, old := d.reload.started, d.runningLocked()
	d.reload.mu.Unlock()
	if !started {
		return nil, nil, errNotStarted
	}

	live, applied, needRestart := diffConfig(old, newCfg)
	d.apply(old, live)

	// Rooms, outside the lock, which the timers need on every tick:
	// opening a room reads its history from disk.
	added, removed, changed := diffRooms(old.Rooms, newCfg.Rooms)
	live.Rooms = slices.Clone(old.Rooms)
	announce := false
	for _, r := range added {
		key := fmt.Sprintf("room %q added", r.Name)
		acc, err := r.RoomAccess()
		var s *rooms.Sequencer
		if err == nil {
			s, err = d.hostRoom(r.Name, acc)
		}
		switch {
		case errors.Is(err, rooms.ErrAlreadyHosted):
			applied = append(applied, fmt.Sprintf("%s; already hosted as %s", key, s.Ref()))
		case err != nil:
			needRestart = append(needRestart, fmt.Sprintf("%s but cannot be hosted (%v)", key, err))
			continue
		default:
			applied = append(applied, fmt.Sprintf("%s; now hosted as %s", key, s.Ref()))
			announce = true
		}
		live.Rooms = append(live.Rooms, r)
	}
	for _, name := range removed {
		needRestart = append(needRestart, fmt.Sprintf("room %q removed; it stays hosted", name))
	}
	for _, r := range changed {
		key := fmt.Sprintf("room %q access changed", r.Name)
		acc, err := r.RoomAccess()
		s := d.host.Room(r.Name)
		if err == nil && s == nil {
			err = errors.New("it is not hosted")
		}
		if err == nil {
			err = s.SetAccess(acc)
		}
		if err != nil {
			needRestart = append(needRestart, fmt.Sprintf("%s but cannot be applied (%v); it keeps its old access", key, err))
			continue
		}
		applied = append(applied, fmt.Sprintf("%s; now %s, for joins from now on", key, acc.Mode))
		live.Rooms[slices.IndexFunc(live.Rooms, func(o Room) bool { return o.Name == r.Name })] = r
		announce = true
	}
	if announce {
		// List new rooms, and new access, now rather than at the next
		// interval.
		d.announce()
	}

	if !equalValues(reflect.ValueOf(old.Discovery.Peers), reflect.ValueOf(live.Discovery.Peers)) {
		// Validated above, so within MaxPeers. Peers added through the
		// API give way to the file's list.
		if err := d.disc.SetPeers(live.Discovery.Peers); err != nil {
			return applied, needRestart, err
		}
	}

	d.reload.mu.Lock()
	d.reload.cfg = &live
	d.reload.mu.Unlock()
	return applied, needRestart, nil
}

// apply tells the parts of the daemon that hold a live key of their own
// that it changed from old to live.
func (d *Daemon) apply(old, live Config) {
	if live.Nick != old.Nick {
		d.host.SetNick(live.Nick)
	}
	if live.Discovery.Lifetime != old.Discovery.Lifetime {
		d.host.SetLifetime(time.Duration(live.Discovery.Lifetime))
	}
	if live.Member.Path != old.Member.Path {
		for _, m := range d.memberList() {
			m.SetPath(live.Member.Path)
		}
	}
}

// diffConfig compares the running configuration old with next, both valid,
// key by key ([[room]] aside: see diffRooms). It returns old with the live
// keys (liveKeys) that can be applied taken from next, and a line for each
// changed key, in the order of Config's fields: those applied, and those
// that need a restart.
func diffConfig(old, next Config) (live Config, applied, restart []string) {
	live = old
	walkLeaves("", reflect.ValueOf(&live).Elem(), reflect.ValueOf(next), func(key string, lv, nv reflect.Value) {
		if equalValues(lv, nv) {
			return
		}
		line := fmt.Sprintf("%s changed (%s → %s)", key, formatValue(lv), formatValue(nv))
		if !liveKeys[key] {
			restart = append(restart, line)
			return
		}
		// announce_interval and room_lifetime are both live and next is
		// valid, so the lifetime still spans two announcements.
		lv.Set(nv)
		applied = append(applied, line)
	})
	return live, applied, restart
}

// walkLeaves calls f with the dotted TOML key and the values in a and b of
// every configuration key below struct type of a and b, except the
// [[room]] list and fields without a key (Path). a is settable.
func walkLeaves(prefix string, a, b reflect.Value, f func(key string, a, b reflect.Value)) {
	t := a.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" || prefix == "" && name == "room" {
			continue
		}
		key := joinKey(prefix, name)
		fa, fb := a.Field(i), b.Field(i)
		if _, text := textForms[fa.Type()]; fa.Kind() == reflect.Struct && !text {
			walkLeaves(key, fa, fb, f)
			continue
		}
		f(key, fa, fb)
	}
}

// equalValues reports whether two values of a configuration key are the
// same; an empty list equals a missing one.
func equalValues(a, b reflect.Value) bool {
	if a.Kind() != reflect.Slice {
		return a.Equal(b)
	}
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		if !equalValues(a.Index(i), b.Index(i)) {
			return false
		}
	}
	return true
}

// formatValue writes a configuration value roughly as TOML would, for
// messages: strings quoted, addresses and durations bare.
func formatValue(v reflect.Value) string {
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		text, _ := m.MarshalText()
		if len(text) == 0 {
			return `""`
		}
		return string(text)
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Slice:
		elems := make([]string, v.Len())
		for i := range elems {
			elems[i] = formatValue(v.Index(i))
		}
		return "[" + strings.Join(elems, ", ") + "]"
	default:
		return fmt.Sprint(v.Interface())
	}
}

// diffRooms returns the rooms in next but not in old, the names of those
// in old but not in next, and the rooms in both whose access differs (as
// next has them), each in list order.
func diffRooms(old, next []Room) (added []Room, removed []string, changed []Room) {
	find := func(list []Room, name string) int {
		return slices.IndexFunc(list, func(r Room) bool { return r.Name == name })
	}
	for _, r := range next {
		i := find(old, r.Name)
		switch {
		case i < 0:
			added = append(added, r)
		case !reflect.DeepEqual(normalAccess(old[i]), normalAccess(r)):
			changed = append(changed, r)
		}
	}
	for _, r := range old {
		if find(next, r.Name) < 0 {
			removed = append(removed, r.Name)
		}
	}
	return added, removed, changed
}

// normalAccess returns r with "" access spelt "open" and an empty allow
// list as nil, so that equal settings compare equal.
func normalAccess(r Room) Room {
	if r.Access == "" {
		r.Access = "open"
	}
	if len(r.Allow) == 0 {
		r.Allow = nil
	}
	return r
}
