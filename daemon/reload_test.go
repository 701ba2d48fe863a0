package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/rooms"
)

// reloadBase is a valid configuration that does not depend on the
// environment.
func reloadBase() Config {
	c := Default()
	c.StateDir = "/var/lib/meshd"
	c.Socket = "/run/meshd/meshd.sock"
	c.Nick = "alice"
	c.Rooms = []Room{{Name: "ops"}}
	return c
}

func TestDiffConfig(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		applied []string
		restart []string
	}{
		{name: "unchanged", change: func(*Config) {}},
		{name: "path only", change: func(c *Config) { c.Path = "/elsewhere.toml" }},
		{
			name:    "log_level",
			change:  func(c *Config) { c.LogLevel = "debug" },
			applied: []string{`log_level changed ("info" → "debug")`},
		},
		{
			name:    "memory_limit",
			change:  func(c *Config) { c.MemoryLimit = 0 },
			applied: []string{"memory_limit changed (auto → off)"},
		},
		{
			name:    "shorter announce_interval",
			change:  func(c *Config) { c.Discovery.Interval = Duration(2 * time.Second) },
			applied: []string{"discovery.announce_interval changed (5s → 2s)"},
		},
		{
			name:    "announce_interval up to half the running lifetime",
			change:  func(c *Config) { c.Discovery.Interval = Duration(15 * time.Second) },
			applied: []string{"discovery.announce_interval changed (5s → 15s)"},
		},
		{
			name: "announce_interval with a longer lifetime",
			change: func(c *Config) {
				c.Discovery.Interval = Duration(20 * time.Second)
				c.Discovery.Lifetime = Duration(time.Minute)
			},
			applied: []string{
				"discovery.announce_interval changed (5s → 20s)",
				"discovery.room_lifetime changed (30s → 1m0s)",
			},
		},
		{
			name:    "room_lifetime",
			change:  func(c *Config) { c.Discovery.Lifetime = Duration(time.Minute) },
			applied: []string{"discovery.room_lifetime changed (30s → 1m0s)"},
		},
		{
			name:    "discovery.group",
			change:  func(c *Config) { c.Discovery.Group = netip.MustParseAddrPort("239.255.77.2:7701") },
			restart: []string{"discovery.group changed (239.255.77.1:7701 → 239.255.77.2:7701)"},
		},
		{
			name:    "state_dir",
			change:  func(c *Config) { c.StateDir = "/srv/meshd" },
			restart: []string{`state_dir changed ("/var/lib/meshd" → "/srv/meshd")`},
		},
		{
			name:    "socket",
			change:  func(c *Config) { c.Socket = "/run/m.sock" },
			restart: []string{`socket changed ("/run/meshd/meshd.sock" → "/run/m.sock")`},
		},
		{
			name:    "socket_group",
			change:  func(c *Config) { c.SocketGroup = "wheel" },
			restart: []string{`socket_group changed ("meshd" → "wheel")`},
		},
		{
			name:    "nick",
			change:  func(c *Config) { c.Nick = "bob" },
			applied: []string{`nick changed ("alice" → "bob")`},
		},
		{
			name:    "member.path",
			change:  func(c *Config) { c.Member.Path = "tcp" },
			applied: []string{`member.path changed ("auto" → "tcp")`},
		},
		{
			name:    "ttl",
			change:  func(c *Config) { c.Discovery.TTL = 4 },
			restart: []string{"discovery.ttl changed (1 → 4)"},
		},
		{
			name:    "interfaces added",
			change:  func(c *Config) { c.Discovery.Interfaces = []string{"br-lan", "bat0"} },
			restart: []string{`discovery.interfaces changed ([] → ["br-lan", "bat0"])`},
		},
		{
			name:   "interfaces empty equals missing",
			change: func(c *Config) { c.Discovery.Interfaces = []string{} },
		},
		{
			name:    "host.listen",
			change:  func(c *Config) { c.Host.Listen = netip.MustParseAddrPort("10.0.0.1:7702") },
			restart: []string{"host.listen changed (0.0.0.0:7702 → 10.0.0.1:7702)"},
		},
		{
			name:    "host.advertise",
			change:  func(c *Config) { c.Host.Advertise = []netip.Addr{netip.MustParseAddr("10.0.0.1")} },
			restart: []string{"host.advertise changed ([] → [10.0.0.1])"},
		},
		{
			name:    "host.data_groups",
			change:  func(c *Config) { c.Host.DataGroups = netip.MustParsePrefix("239.255.79.0/24") },
			restart: []string{"host.data_groups changed (239.255.78.0/24 → 239.255.79.0/24)"},
		},
		{
			name:    "host.data_port",
			change:  func(c *Config) { c.Host.DataPort = 7777 },
			restart: []string{"host.data_port changed (7703 → 7777)"},
		},
		{
			name:    "host.history",
			change:  func(c *Config) { c.Host.History = 50 },
			restart: []string{"host.history changed (1000 → 50)"},
		},
		{
			name:    "host.history_dir",
			change:  func(c *Config) { c.Host.HistoryDir = "/srv/history" },
			restart: []string{`host.history_dir changed ("" → "/srv/history")`},
		},
		{
			name:   "rooms are not diffConfig's",
			change: func(c *Config) { c.Rooms = []Room{{Name: "other"}} },
		},
		{
			name: "several, in field order",
			change: func(c *Config) {
				c.Host.DataPort = 7777
				c.LogLevel = "warn"
				c.Discovery.Interval = Duration(time.Second)
				c.StateDir = "/srv/meshd"
			},
			applied: []string{
				`log_level changed ("info" → "warn")`,
				"discovery.announce_interval changed (5s → 1s)",
			},
			restart: []string{
				`state_dir changed ("/var/lib/meshd" → "/srv/meshd")`,
				"host.data_port changed (7703 → 7777)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := reloadBase()
			next := reloadBase()
			tt.change(&next)
			if err := next.Validate(); err != nil {
				t.Fatalf("test configuration is not valid: %v", err)
			}
			live, applied, restart := diffConfig(old, next)
			if !slices.Equal(applied, tt.applied) {
				t.Errorf("applied:\n got %q\nwant %q", applied, tt.applied)
			}
			if !slices.Equal(restart, tt.restart) {
				t.Errorf("restart:\n got %q\nwant %q", restart, tt.restart)
			}
			// live is old with exactly the applied keys from next: a second
			// diff against next finds only what needs a restart.
			_, again, rest := diffConfig(live, next)
			if len(again) != 0 || len(rest) != len(tt.restart) {
				t.Errorf("diff of the result against next: applied %q, restart %q; want none, %d", again, rest, len(tt.restart))
			}
			if live.StateDir != old.StateDir || live.Host.DataPort != old.Host.DataPort || live.Discovery.Group != old.Discovery.Group || !reflect.DeepEqual(live.Rooms, old.Rooms) {
				t.Errorf("diffConfig applied a key that is not live: %+v", live)
			}
		})
	}
}

// TestDiffConfigEveryKey checks that diffConfig sees a change to every key
// of the file but [[room]], so that a key added to Config is reported
// rather than silently ignored on reload.
func TestDiffConfigEveryKey(t *testing.T) {
	all := keys()
	var seen []string
	old := reloadBase()
	v := reflect.ValueOf(&old).Elem()
	walkLeaves("", v, v, func(key string, _, _ reflect.Value) {
		seen = append(seen, key)
	})
	for _, key := range all {
		isTable := slices.ContainsFunc(all, func(k string) bool { return strings.HasPrefix(k, key+".") })
		if isTable || key == "room" || strings.HasPrefix(key, "room.") {
			continue
		}
		if !slices.Contains(seen, key) {
			t.Errorf("diffConfig does not compare %s", key)
		}
	}
	for key := range liveKeys {
		if !slices.Contains(seen, key) {
			t.Errorf("liveKeys names %s, which is not a key", key)
		}
	}
}

func TestDiffRooms(t *testing.T) {
	rs := func(names ...string) []Room {
		var out []Room
		for _, n := range names {
			out = append(out, Room{Name: n})
		}
		return out
	}
	names := func(rs []Room) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	invite := []Room{{Name: "a", Access: "invite", Allow: []string{"abcdefgh"}}}
	tests := []struct {
		old, next               []Room
		added, removed, changed []string
	}{
		{nil, nil, nil, nil, nil},
		{rs("a"), rs("a"), nil, nil, nil},
		{nil, rs("a", "b"), []string{"a", "b"}, nil, nil},
		{rs("a", "b"), nil, nil, []string{"a", "b"}, nil},
		{rs("a", "b"), rs("b", "c"), []string{"c"}, []string{"a"}, nil},
		{rs("a", "b"), rs("b", "a"), nil, nil, nil},
		{rs("a"), []Room{{Name: "a", Access: "open", Allow: []string{}}}, nil, nil, nil},
		{rs("a"), invite, nil, nil, []string{"a"}},
		{invite, []Room{{Name: "a", Access: "invite"}}, nil, nil, []string{"a"}},
	}
	for _, tt := range tests {
		added, removed, changed := diffRooms(tt.old, tt.next)
		if !slices.Equal(names(added), tt.added) || !slices.Equal(removed, tt.removed) || !slices.Equal(names(changed), tt.changed) {
			t.Errorf("diffRooms(%v, %v) = %q, %q, %q; want %q, %q, %q", tt.old, tt.next, names(added), removed, names(changed), tt.added, tt.removed, tt.changed)
		}
	}
}

// TestReloadInterval reloads a daemon that Run has not opened (it changes
// nothing that needs sockets) while a stand-in for the timers reads the
// interval, which the race detector checks.
func TestReloadInterval(t *testing.T) {
	d := &Daemon{cfg: reloadBase(), log: slog.New(slog.DiscardHandler)}
	if _, _, err := d.Reload(reloadBase()); !errors.Is(err, errNotStarted) {
		t.Fatalf("Reload before the timers run: err = %v, want errNotStarted", err)
	}
	if got := d.announceInterval(); got != 5*time.Second {
		t.Fatalf("interval = %v, want 5s", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			d.announceInterval()
		}
	})
	defer func() { cancel(); wg.Wait() }()

	next := reloadBase()
	next.Discovery.Interval = Duration(time.Second)
	next.Discovery.Group = netip.MustParseAddrPort("239.255.77.2:7701")
	applied, restart, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"discovery.announce_interval changed (5s → 1s)"}; !slices.Equal(applied, want) {
		t.Errorf("applied = %q, want %q", applied, want)
	}
	if want := []string{"discovery.group changed (239.255.77.1:7701 → 239.255.77.2:7701)"}; !slices.Equal(restart, want) {
		t.Errorf("restart = %q, want %q", restart, want)
	}
	if got := d.announceInterval(); got != time.Second {
		t.Errorf("interval after reload = %v, want 1s", got)
	}
	if got := d.running().Discovery.Group; got != reloadBase().Discovery.Group {
		t.Errorf("running discovery.group = %v; a key that needs a restart changed", got)
	}

	// The same file again: the group still needs a restart, nothing else.
	applied, restart, err = d.Reload(next)
	if err != nil || len(applied) != 0 || len(restart) != 1 {
		t.Errorf("second reload: %q, %q, %v; want only the group", applied, restart, err)
	}

	// An invalid configuration changes nothing.
	bad := next
	bad.Discovery.Interval = Duration(time.Millisecond)
	if _, _, err := d.Reload(bad); err == nil {
		t.Error("invalid configuration accepted")
	}
	if got := d.announceInterval(); got != time.Second {
		t.Errorf("interval after a rejected reload = %v, want 1s", got)
	}
}

// testDaemonConfig is a configuration for a daemon run by a test: its
// files in a temporary directory, its sockets on ports of its own.
func testDaemonConfig(t *testing.T) Config {
	dir := t.TempDir()
	cfg := reloadBase()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "meshd.sock")
	port := 20000 + rand.IntN(20000)
	cfg.Discovery.Group = netip.AddrPortFrom(netip.MustParseAddr("239.255.77.201"), uint16(port))
	cfg.Discovery.Interval = Duration(time.Hour)
	cfg.Discovery.Lifetime = Duration(2 * time.Hour)
	cfg.Host.DataPort = port + 1
	cfg.Host.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	return cfg
}

// runDaemon runs a daemon of cfg until the test ends, and returns once
// it has started, as a first Reload tells: then Reload may change it. It
// skips the test where the daemon cannot run (no multicast route).
func runDaemon(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, _, err := d.Reload(cfg); !errors.Is(err, errNotStarted) {
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		select {
		case err := <-done:
			done <- nil // for the cleanup
			t.Skipf("daemon cannot run here: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not start")
		}
	}
}

// TestReloadHostsRooms runs a daemon and adds a room to its file.
func TestReloadHostsRooms(t *testing.T) {
	cfg := testDaemonConfig(t)
	d := runDaemon(t, cfg)
	next := cfg
	next.Rooms = []Room{{Name: "news"}}
	applied, restart, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	ref := "news@" + d.ident.Fingerprint()
	if want := []string{fmt.Sprintf("room %q added; now hosted as %s", "news", ref)}; !slices.Equal(applied, want) {
		t.Errorf("applied = %q, want %q", applied, want)
	}
	if want := []string{`room "ops" removed; it stays hosted`}; !slices.Equal(restart, want) {
		t.Errorf("restart = %q, want %q", restart, want)
	}
	var names []string
	for _, s := range d.host.Rooms() {
		names = append(names, s.Name())
	}
	if want := []string{"news", "ops"}; !slices.Equal(names, want) {
		t.Errorf("hosted rooms = %q, want %q", names, want)
	}
	if _, err := d.dir.Resolve(ref); err != nil {
		t.Errorf("%s is not listed at once: %v", ref, err)
	}
}

// Peers reload live; peers added through the API stay until the file's
// list changes.
func TestReloadPeers(t *testing.T) {
	x, err := rooms.NewDiscovery(rooms.DiscoveryConfig{Stats: new(rooms.Stats)})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: reloadBase(), log: slog.New(slog.DiscardHandler), disc: x}
	d.announceInterval() // as the timers do once the daemon runs

	next := reloadBase()
	next.Discovery.Peers = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:7701")}
	applied, restart, err := d.Reload(next)
	if err != nil || len(restart) != 0 {
		t.Fatalf("Reload: %v, restart %q", err, restart)
	}
	if want := []string{"discovery.peers changed ([] → [10.0.0.2:7701])"}; !slices.Equal(applied, want) {
		t.Errorf("applied = %q, want %q", applied, want)
	}
	b := backend{d}
	if err := b.AddPeer("10.0.0.3:7701"); err != nil {
		t.Fatal(err)
	}
	if got := b.Peers(); !slices.Equal(got, []string{"10.0.0.2:7701", "10.0.0.3:7701"}) {
		t.Fatalf("peers = %q", got)
	}
	// The same file again: nothing changes, the added peer stays.
	if _, _, err := d.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := b.Peers(); len(got) != 2 {
		t.Fatalf("peers after an unchanged reload = %q, want both", got)
	}
	next.Discovery.Peers = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.4:7701")}
	if _, _, err := d.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := b.Peers(); !slices.Equal(got, []string{"10.0.0.4:7701"}) {
		t.Fatalf("peers after the file changed = %q, want the file's", got)
	}
	if err := b.RemovePeer("10.0.0.9:7701"); err == nil {
		t.Error("removing a peer that is not one succeeded")
	}
	if err := b.AddPeer("239.0.0.1:7701"); err == nil {
		t.Error("a multicast peer was accepted")
	}
}
