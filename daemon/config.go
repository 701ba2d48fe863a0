package daemon

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"meshd/ctl"
	"meshd/rooms"
	"meshd/rooms/wire"
)

// Config is meshd's configuration: Default, overlaid by a TOML file by Load.
// configs/meshd.toml documents every key.
type Config struct {
	Path        string       `toml:"-"`            // file it was loaded from; "" for Default
	Version     int          `toml:"version"`      // format version; must be 1
	StateDir    string       `toml:"state_dir"`    // keys and room state
	Socket      string       `toml:"socket"`       // control socket
	SocketGroup string       `toml:"socket_group"` // group allowed on the control socket
	Nick        string       `toml:"nick"`         // default nick when joining
	LogLevel    string       `toml:"log_level"`    // debug, info, warn or error
	MemoryLimit ByteSize     `toml:"memory_limit"` // soft limit of the Go runtime's memory (GOMEMLIMIT); 0 means none, MemoryLimitAuto a quarter of the RAM
	Discovery   Discovery    `toml:"discovery"`
	Host        HostConfig   `toml:"host"`
	Member      MemberConfig `toml:"member"`
	Rooms       []Room       `toml:"room"` // rooms this daemon hosts from start
}

// Discovery configures how rooms are announced and found.
type Discovery struct {
	Group      netip.AddrPort   `toml:"group"`              // IPv4 multicast group and port of announcements
	Interval   Duration         `toml:"announce_interval"`  // between announcements of each hosted room
	Lifetime   Duration         `toml:"room_lifetime"`      // a room stays listed this long after its last announcement
	TTL        int              `toml:"ttl"`                // IP multicast TTL of announcements and room data
	Interfaces []string         `toml:"interfaces"`         // empty means every up multicast interface
	Exclude    []string         `toml:"exclude_interfaces"` // never these, even if named in interfaces
	SearchTTL  int              `toml:"search_max_ttl"`     // ceiling of the expanding-TTL search
	Relay      bool             `toml:"relay"`              // pass verified announcements on across interfaces and to peers
	RelayHops  int              `toml:"relay_hops"`         // hop limit of relayed announcements
	Peers      []netip.AddrPort `toml:"peers"`              // unicast peers' discovery sockets
}

// HostConfig configures the rooms this daemon hosts.
type HostConfig struct {
	Listen     netip.AddrPort `toml:"listen"`      // TCP address for joins; port 0 picks one
	Advertise  []netip.Addr   `toml:"advertise"`   // join addresses to announce; empty means the discovery interfaces' addresses
	DataGroups netip.Prefix   `toml:"data_groups"` // IPv4 multicast prefix rooms' data groups are drawn from
	DataPort   int            `toml:"data_port"`   // UDP port of room data
	History    int            `toml:"history"`     // lines each hosted room keeps for members that missed them
	MemberRate int            `toml:"member_rate"` // lines a second each member may say; 0 means no bound
	HistoryDir string         `toml:"history_dir"` // where hosted rooms' logs live; "" means a "history" directory beside the control socket
}

// MemberConfig configures this daemon's memberships of rooms hosted
// elsewhere.
type MemberConfig struct {
	Path string `toml:"path"` // "auto", "multicast" or "tcp": how rooms reach this daemon
}

// Room is a room this daemon hosts from start.
type Room struct {
	Name string `toml:"name"`
	// Access is who the room admits: "open" (or ""), "invite" or
	// "passphrase".
	Access string `toml:"access"`
	// Allow lists the members an invite-only room admits without an
	// invite: hex keys or fingerprints.
	Allow []string `toml:"allow"`
	// PassphraseFile holds a passphrase room's passphrase.
	PassphraseFile string `toml:"passphrase_file"`
}

// Duration is a time.Duration written in TOML as a string such as "5s".
type Duration time.Duration

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements [encoding.TextMarshaler].
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String returns d as time.Duration formats it, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a number of bytes written in TOML as a string such as
// "24MiB", in the syntax of the GOMEMLIMIT environment variable: an integer
// with a unit of B, KiB, MiB, GiB or TiB (none means bytes). "off" is 0,
// "auto" MemoryLimitAuto.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := string(text)
	switch s {
	case "off":
		*b = 0
		return nil
	case "auto":
		*b = MemoryLimitAuto
		return nil
	}
	shift := uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil || n > math.MaxInt64>>shift {
		return fmt.Errorf("%q is not a size such as \"24MiB\"", text)
	}
	*b = ByteSize(n << shift)
	return nil
}

// MarshalText implements [encoding.TextMarshaler].
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String returns b in the largest unit that divides it, "off" for 0,
// "auto" for MemoryLimitAuto.
func (b ByteSize) String() string {
	switch {
	case b == 0:
		return "off"
	case b == MemoryLimitAuto:
		return "auto"
	}
	for _, u := range byteUnits {
		if b%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(b>>u.shift), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// maxFileSize bounds what Load reads. A meshd configuration is a few KiB, so
// anything larger is the wrong file rather than a configuration.
const maxFileSize = 1 << 20

// logLevels are the values of log_level.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// maxLifetime is the longest room lifetime an announcement can carry.
const maxLifetime = 65535 * time.Second

// Default returns the built-in configuration, which is what Load starts from.
// StateDir, Socket and Nick depend on the environment: a systemd service
// gets its StateDirectory and RuntimeDirectory, root gets the system paths,
// and anyone else gets per-user paths, so that meshd runs without setup.
func Default() Config {
	return Config{
		Version:     1,
		StateDir:    defaultStateDir(),
		Socket:      ctl.DefaultSocketPath(),
		SocketGroup: "meshd",
		Nick:        defaultNick(),
		LogLevel:    "info",
		MemoryLimit: MemoryLimitAuto,
		Discovery: Discovery{
			Group:     netip.MustParseAddrPort("239.255.77.1:7701"),
			Interval:  Duration(5 * time.Second),
			Lifetime:  Duration(30 * time.Second),
			TTL:       1,
			SearchTTL: 32,
			RelayHops: 4,
		},
		Host: HostConfig{
			Listen:     netip.MustParseAddrPort("0.0.0.0:7702"),
			DataGroups: netip.MustParsePrefix("239.255.78.0/24"),
			DataPort:   7703,
			History:    1000,
			MemberRate: 10,
		},
		Member: MemberConfig{Path: "auto"},
	}
}

func defaultStateDir() string {
	// systemd joins several StateDirectory= entries with ':'; the unit
	// names only one.
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); dir != "" {
		return dir
	}
	if os.Geteuid() == 0 {
		return "/var/lib/meshd"
	}
	// The XDG spec says to ignore a relative XDG_STATE_HOME.
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "meshd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "meshd")
	}
	// Validate reports the empty path, asking for state_dir to be set.
	return ""
}

// defaultNick is the host's short name, which is what people on a mesh call
// a machine, or "meshd" if that is not a valid nick.
func defaultNick() string {
	host, err := os.Hostname()
	if err != nil {
		return "meshd"
	}
	host, _, _ = strings.Cut(host, ".")
	if rooms.ValidateNick(host) != nil {
		return "meshd"
	}
	return host
}

// SlogLevel returns c.LogLevel as a slog.Level; info if c does not validate.
func (c Config) SlogLevel() slog.Level {
	return logLevels[c.LogLevel]
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	File string // "" for a configuration not loaded from a file
	Line int    // 0 if unknown
	Col  int    // 0 if unknown; set for syntax errors
	Key  string // dotted TOML key, with array indices: "room[1].name"; "" for syntax errors
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError lists every problem found in a configuration: in file order
// from Load, in field order from Validate.
type ConfigError struct {
	Problems []Problem
}

// Error returns one line per problem.
func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads the TOML file at path over Default. If the file is not valid,
// the error is a *ConfigError listing every problem, each with its line and
// key; other errors are from reading the file.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	if len(data) > maxFileSize {
		return Config{}, &ConfigError{[]Problem{{File: path, Msg: "file is larger than 1 MiB; is it the right file?"}}}
	}
	c, problems := parse(path, string(data))
	if len(problems) > 0 {
		return Config{}, &ConfigError{problems}
	}
	return c, nil
}

// parse returns Default overlaid by the TOML document src, read from file,
// and every problem with the result.
func parse(file, src string) (Config, []Problem) {
	var tree map[string]any
	if _, err := toml.Decode(src, &tree); err != nil {
		p := Problem{File: file, Msg: err.Error()}
		var perr toml.ParseError
		if errors.As(err, &perr) {
			p.Line, p.Col, p.Msg = perr.Position.Line, perr.Position.Col, perr.Message
		}
		return Config{}, []Problem{p}
	}

	c := Default()
	c.Path = file
	var d decoder
	// Default's version would hide a missing one, and the version must be
	// explicit so that a future format can tell old files apart.
	if _, ok := tree["version"]; !ok {
		d.add("version", `missing; add "version = 1" at the top`)
	}
	d.decode("", tree, reflect.ValueOf(&c).Elem())
	problems := append(d.problems, c.problems()...)

	lines := keyLines(src)
	for i := range problems {
		problems[i].File = file
		problems[i].Line = lines.find(problems[i].Key)
	}
	// sort.SliceStable, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.SliceStable(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Key, b.Key)) < 0
	})
	return c, problems
}

// Validate returns a *ConfigError listing every problem with c, or nil.
func (c Config) Validate() error {
	problems := c.problems()
	if len(problems) == 0 {
		return nil
	}
	for i := range problems {
		problems[i].File = c.Path
	}
	return &ConfigError{problems}
}

func (c Config) problems() []Problem {
	var d decoder
	if c.Version != 1 {
		d.add("version", "%d is not supported; this meshd reads version 1", c.Version)
	}
	// systemd starts services in /, so a relative path would not be where
	// the operator who wrote it expects.
	if !filepath.IsAbs(c.StateDir) {
		d.add("state_dir", "%q is not an absolute path", c.StateDir)
	}
	if !filepath.IsAbs(c.Socket) {
		d.add("socket", "%q is not an absolute path", c.Socket)
	}
	if err := rooms.ValidateNick(c.Nick); err != nil {
		d.add("nick", "%v", err)
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		d.add("log_level", "%q is not a log level; use debug, info, warn or error", c.LogLevel)
	}
	if c.MemoryLimit > 0 && c.MemoryLimit < minMemoryLimit {
		d.add("memory_limit", "%q is below the %s an idle meshd needs, where the garbage collector would run without pause; use at least %q, \"auto\" or \"off\"", c.MemoryLimit, minMemoryLimit, minMemoryLimit)
	}

	disc := c.Discovery
	switch g := disc.Group; {
	case !g.Addr().Is4() || !g.Addr().IsMulticast():
		d.add("discovery.group", "%s is not an IPv4 multicast address and port such as \"239.255.77.1:7701\"", quote(g))
	case g.Port() == 0:
		d.add("discovery.group", "port 0 is not allowed; every node must use the same fixed port")
	}
	if disc.Interval < Duration(100*time.Millisecond) || disc.Interval > Duration(time.Hour) {
		d.add("discovery.announce_interval", "%q is out of range; use 100ms..1h", disc.Interval)
	}
	// A room must survive one lost announcement; announcements carry the
	// lifetime in whole seconds in 16 bits.
	if disc.Lifetime > Duration(maxLifetime) {
		d.add("discovery.room_lifetime", "%q is out of range; the longest is %q", disc.Lifetime, Duration(maxLifetime))
	} else if disc.Lifetime < 2*disc.Interval {
		d.add("discovery.room_lifetime", "%q is less than twice discovery.announce_interval (%q); use at least %q",
			disc.Lifetime, disc.Interval, 2*disc.Interval)
	}
	if h := c.Host.History; h < 16 || h > 1_000_000 {
		d.add("host.history", "%d is out of range; use 16..1000000", h)
	}
	if r := c.Host.MemberRate; r < 0 || r > 1e6 {
		d.add("host.member_rate", "%d is out of range; use 0 (no bound) to 1000000", r)
	}
	if dir := c.Host.HistoryDir; dir != "" && !filepath.IsAbs(dir) {
		d.add("host.history_dir", "%q is not an absolute path", dir)
	}
	switch c.Member.Path {
	case "auto", "multicast", "tcp":
	default:
		d.add("member.path", "%q is not a path; use auto, multicast or tcp", c.Member.Path)
	}
	if disc.TTL < 1 || disc.TTL > 255 {
		d.add("discovery.ttl", "%d is out of range; use 1..255", disc.TTL)
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"discovery.interfaces", disc.Interfaces}, {"discovery.exclude_interfaces", disc.Exclude}} {
		for i, name := range list.names {
			key := fmt.Sprintf("%s[%d]", list.key, i)
			if name == "" {
				d.add(key, "empty interface name")
			} else if j := slices.Index(list.names[:i], name); j >= 0 {
				d.add(key, "%q duplicates %s[%d]", name, list.key, j)
			}
		}
	}
	if disc.SearchTTL < 1 || disc.SearchTTL > 255 {
		d.add("discovery.search_max_ttl", "%d is out of range; use 1..255", disc.SearchTTL)
	}
	if disc.RelayHops < 1 || disc.RelayHops > wire.MaxHops {
		d.add("discovery.relay_hops", "%d is out of range; use 1..%d", disc.RelayHops, wire.MaxHops)
	}
	if len(disc.Peers) > rooms.MaxPeers {
		d.add("discovery.peers", "lists %d peers; at most %d", len(disc.Peers), rooms.MaxPeers)
	}
	for i, p := range disc.Peers {
		key := fmt.Sprintf("discovery.peers[%d]", i)
		if err := checkPeer(p); err != nil {
			d.add(key, "%s %v", quote(p), err)
		} else if j := slices.Index(disc.Peers[:i], p); j >= 0 {
			d.add(key, "%s duplicates discovery.peers[%d]", quote(p), j)
		}
	}

	host := c.Host
	if !host.Listen.IsValid() {
		d.add("host.listen", "%s is not an IP address and port such as \"0.0.0.0:7702\"", quote(host.Listen))
	}
	if len(host.Advertise) > wire.MaxAddrs {
		d.add("host.advertise", "lists %d addresses; an announcement carries at most %d", len(host.Advertise), wire.MaxAddrs)
	}
	for i, a := range host.Advertise {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			d.add(fmt.Sprintf("host.advertise[%d]", i), "%s cannot be advertised; use an address peers can reach", quote(a))
		}
	}
	switch p := host.DataGroups; {
	case !p.Addr().Is4() || !p.Addr().IsMulticast() || p.Bits() < 4:
		d.add("host.data_groups", "%s is not an IPv4 multicast prefix such as \"239.255.78.0/24\"", quote(p))
	case p != p.Masked():
		d.add("host.data_groups", "%s has bits set after the prefix; use %s", quote(p), quote(p.Masked()))
	}
	if host.DataPort < 1 || host.DataPort > 65535 {
		d.add("host.data_port", "%d is out of range; use 1..65535", host.DataPort)
	}

	for i, r := range c.Rooms {
		key := fmt.Sprintf("room[%d].name", i)
		if err := rooms.ValidateName(r.Name); err != nil {
			d.add(key, "%v", err)
		} else if j := slices.IndexFunc(c.Rooms[:i], func(o Room) bool { return o.Name == r.Name }); j >= 0 {
			d.add(key, "%q duplicates room[%d]", r.Name, j)
		}
		r.problems(&d, fmt.Sprintf("room[%d]", i))
	}
	return d.problems
}

// problems adds what is wrong with the access of room r, whose key is
// key, to d.
func (r Room) problems(d *decoder, key string) {
	access := rooms.AccessOpen
	if r.Access != "" {
		a, err := rooms.ParseAccess(r.Access)
		if err != nil {
			d.add(key+".access", "%v", err)
			return
		}
		access = a
	}
	if len(r.Allow) > 0 && access != rooms.AccessInvite {
		d.add(key+".allow", "lists members, but the room is %s; set access = \"invite\" or remove allow", access)
	}
	for i, e := range r.Allow {
		if err := rooms.ValidateAllow(e); err != nil {
			d.add(fmt.Sprintf("%s.allow[%d]", key, i), "%v", err)
		}
	}
	switch {
	case access == rooms.AccessPassphrase && r.PassphraseFile == "":
		d.add(key+".passphrase_file", "missing; a passphrase room needs the file that holds its passphrase")
	case access != rooms.AccessPassphrase && r.PassphraseFile != "":
		d.add(key+".passphrase_file", "is set, but the room is %s; set access = \"passphrase\" or remove passphrase_file", access)
	case r.PassphraseFile != "" && !filepath.IsAbs(r.PassphraseFile):
		d.add(key+".passphrase_file", "%q is not an absolute path", r.PassphraseFile)
	}
}

// maxPassphrase bounds a passphrase file: a passphrase is a line.
const maxPassphrase = 1024

// RoomAccess reads the access of room r, whose configuration is valid,
// with its passphrase file if it has one.
func (r Room) RoomAccess() (rooms.RoomAccess, error) {
	a := rooms.RoomAccess{Allow: r.Allow}
	if r.Access != "" {
		var err error
		if a.Mode, err = rooms.ParseAccess(r.Access); err != nil {
			return a, err
		}
	}
	if r.PassphraseFile != "" {
		p, err := ReadPassphrase(r.PassphraseFile)
		if err != nil {
			return a, err
		}
		a.Passphrase = p
	}
	return a, a.Validate()
}

// ReadPassphrase reads a passphrase from the file at path: its first line,
// without the line ending.
func ReadPassphrase(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	if len(b) > maxPassphrase {
		return nil, fmt.Errorf("passphrase: %s is longer than %d bytes; a passphrase is one line", path, maxPassphrase)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("passphrase: %s holds no passphrase on its first line", path)
	}
	return []byte(line), nil
}

// checkPeer reports why p cannot be a static peer.
func checkPeer(p netip.AddrPort) error {
	switch a := p.Addr(); {
	case !a.Unmap().Is4():
		return errors.New(`is not an IPv4 address and port such as "10.0.0.2:7701"`)
	case a.IsUnspecified() || a.IsMulticast() || a.Unmap() == netip.IPv4Unspecified():
		return errors.New("is not a unicast address; a peer is one machine")
	case p.Port() == 0:
		return errors.New("has port 0; use the peer's discovery port")
	}
	return nil
}

// quote returns v's text form quoted, as an operator would write it. (%q
// would use String, which says "invalid AddrPort" for an empty value.)
func quote(v encoding.TextMarshaler) string {
	text, _ := v.MarshalText()
	return strconv.Quote(string(text))
}

// decoder sets a Config from a decoded TOML tree. BurntSushi's own decoding
// stops at the first wrong type and matches keys case-insensitively (so
// "TTL" and "ttl" would both set the field, the winner decided by map
// order); decoder collects every problem and matches keys exactly.
type decoder struct {
	problems []Problem
}

func (d *decoder) add(key, format string, args ...any) {
	d.problems = append(d.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// textForms describes the types decoded from strings, for messages.
var textForms = map[reflect.Type]string{
	reflect.TypeFor[Duration]():       `a duration such as "5s"`,
	reflect.TypeFor[ByteSize]():       `a size such as "24MiB", "auto" or "off"`,
	reflect.TypeFor[netip.Addr]():     `an IP address such as "192.0.2.1"`,
	reflect.TypeFor[netip.AddrPort](): `an IP address and port such as "192.0.2.1:7702"`,
	reflect.TypeFor[netip.Prefix]():   `an address prefix such as "239.255.78.0/24"`,
}

// decode sets dst, a Config field, from v, the TOML value at key. A value
// with a problem leaves dst as it was, so that validation, which sees the
// default, does not report the problem again in other words.
func (d *decoder) decode(key string, v any, dst reflect.Value) {
	if form, ok := textForms[dst.Type()]; ok {
		s, ok := v.(string)
		if !ok {
			d.add(key, "want %s, not %s", form, describe(v))
			return
		}
		// UnmarshalText may clobber its receiver before it fails.
		val := reflect.New(dst.Type())
		if err := val.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.add(key, "%q is not %s", s, form)
			return
		}
		dst.Set(val.Elem())
		return
	}
	switch dst.Kind() {
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.add(key, "want true or false, not %s", describe(v))
			return
		}
		dst.SetBool(b)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.add(key, "want a string, not %s", describe(v))
			return
		}
		dst.SetString(s)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.add(key, "want an integer, not %s", describe(v))
			return
		}
		if dst.OverflowInt(n) {
			d.add(key, "%d is out of range", n)
			return
		}
		dst.SetInt(n)
	case reflect.Slice:
		elems := reflect.ValueOf(v)
		if elems.Kind() != reflect.Slice {
			d.add(key, "want an array, not %s", describe(v))
			return
		}
		// An empty array means the same as a missing key: keeping it nil
		// lets loaded configurations compare equal to Default.
		if elems.Len() == 0 {
			dst.SetZero()
			return
		}
		s := reflect.MakeSlice(dst.Type(), elems.Len(), elems.Len())
		before := len(d.problems)
		for i := range elems.Len() {
			d.decode(fmt.Sprintf("%s[%d]", key, i), elems.Index(i).Interface(), s.Index(i))
		}
		if len(d.problems) == before {
			dst.Set(s)
		}
	case reflect.Struct:
		table, ok := v.(map[string]any)
		if !ok {
			d.add(key, "want a table, not %s", describe(v))
			return
		}
		fields := tomlFields(dst.Type())
		for name, v := range table {
			sub := joinKey(key, name)
			i, ok := fields[name]
			if !ok {
				d.add(sub, "unknown key%s", suggest(key, name, fields))
				continue
			}
			d.decode(sub, v, dst.Field(i))
		}
	default:
		panic(fmt.Sprintf("daemon: config key %s has type %s, which decode does not handle", key, dst.Type()))
	}
}

// describe names a decoded TOML value for a message.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	default: // []any, or []map[string]any from [[array]] tables
		return "an array"
	}
}

// tomlFields maps the TOML keys of struct type t to field indices.
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// joinKey appends name to the dotted key parent, quoting it as TOML would
// if it is not a bare key.
func joinKey(parent, name string) string {
	name = toml.Key{name}.String()
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// keys returns every key a configuration file may set, tables included, as
// dotted keys without array indices.
func keys() []string {
	var all []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for name, i := range tomlFields(t) {
			key := joinKey(prefix, name)
			all = append(all, key)
			ft := t.Field(i).Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if _, text := textForms[ft]; ft.Kind() == reflect.Struct && !text {
				walk(key, ft)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	slices.Sort(all)
	return all
}

// suggest returns ` (did you mean "KEY"?)` for an unknown key name in the
// table at parent, whose keys are fields, or "" if nothing is close: a
// sibling within two edits (typos, case), else a key of that name in
// another table (a key under the wrong header).
func suggest(parent, name string, fields map[string]int) string {
	best, bestDist := "", 3
	for field := range fields {
		if d := editDistance(strings.ToLower(name), field); d < bestDist || d == bestDist && field < best {
			best, bestDist = field, d
		}
	}
	if best != "" && bestDist < len(name) {
		return fmt.Sprintf(" (did you mean %q?)", joinKey(parent, best))
	}
	for _, key := range keys() {
		if strings.HasSuffix(key, "."+name) || key == name {
			return fmt.Sprintf(" (did you mean %q?)", key)
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := range len(a) {
		cur[0] = i + 1
		for j := range len(b) {
			cost := 1
			if a[i] == b[j] {
				cost = 0
			}
			cur[j+1] = min(prev[j+1]+1, cur[j]+1, prev[j]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lineIndex maps keys, in Problem.Key form, to the lines that set them.
// BurntSushi records key positions but does not export them.
type lineIndex map[string]int

// find returns the line of key or, if the file does not set it (inline
// tables, array elements, defaults), of its nearest ancestor; 0 if none.
func (x lineIndex) find(key string) int {
	for key != "" {
		if line, ok := x[key]; ok {
			return line
		}
		key = key[:max(strings.LastIndexAny(key, ".["), 0)]
	}
	return 0
}

// keyLines indexes the keys of src, a document toml.Decode accepted. It
// understands headers, dotted and quoted keys and multi-line values, which
// is all a meshd configuration uses; a key it misses only costs a message
// its exact line.
func keyLines(src string) lineIndex {
	s := &scanner{src: strings.TrimPrefix(src, "\ufeff"), line: 1}
	x := make(lineIndex)
	arrays := make(map[string]int) // [[array]] key → elements so far
	table := ""
	for s.skipBlank() {
		if s.src[s.pos] == '[' {
			s.pos++
			isArray := s.pos < len(s.src) && s.src[s.pos] == '['
			if isArray {
				s.pos++
			}
			segs := s.key()
			table = ""
			for i, seg := range segs {
				table = joinKey(table, seg)
				n := arrays[table]
				if isArray && i == len(segs)-1 {
					if n == 0 {
						x[table] = s.line
					}
					arrays[table] = n + 1
					table = fmt.Sprintf("%s[%d]", table, n)
				} else if n > 0 {
					// [room.sub] belongs to the last [[room]].
					table = fmt.Sprintf("%s[%d]", table, n-1)
				}
			}
			x[table] = s.line
			s.skipLine()
			continue
		}
		segs := s.key()
		if len(segs) == 0 || !s.consume('=') {
			s.skipLine()
			continue
		}
		key := table
		for _, seg := range segs {
			key = joinKey(key, seg)
			if _, ok := x[key]; !ok {
				x[key] = s.line
			}
		}
		s.skipValue()
	}
	return x
}

// scanner walks a TOML document for keyLines.
type scanner struct {
	src  string
	pos  int
	line int
}

// skipBlank skips whitespace, newlines and comments, and reports whether
// anything is left.
func (s *scanner) skipBlank() bool {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			s.pos++
			s.line++
		case '#':
			s.skipLine()
		default:
			return true
		}
	}
	return false
}

// skipLine moves to the end of the line, before its newline.
func (s *scanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i
	} else {
		s.pos = len(s.src)
	}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.src) && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
		s.pos++
	}
}

// consume skips spaces and c, reporting whether c was there.
func (s *scanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.src) && s.src[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// key reads a possibly dotted key and returns its parts, unquoted.
func (s *scanner) key() []string {
	var segs []string
	for {
		s.skipSpace()
		start := s.pos
		switch {
		case s.pos >= len(s.src):
			return segs
		case s.src[s.pos] == '"' || s.src[s.pos] == '\'':
			q := s.src[s.pos]
			s.skipString()
			raw := s.src[start:s.pos]
			seg, err := strconv.Unquote(raw)
			if q == '\'' || err != nil {
				seg = strings.Trim(raw, string(q))
			}
			segs = append(segs, seg)
		default:
			for s.pos < len(s.src) && isBare(s.src[s.pos]) {
				s.pos++
			}
			if s.pos == start {
				return segs
			}
			segs = append(segs, s.src[start:s.pos])
		}
		if !s.consume('.') {
			return segs
		}
	}
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// skipValue moves past a value to the end of its last line, following
// strings, arrays and inline tables across lines.
func (s *scanner) skipValue() {
	depth := 0
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '"', '\'':
			s.skipString()
		case '[', '{':
			depth++
			s.pos++
		case ']', '}':
			depth--
			s.pos++
		case '#':
			s.skipLine()
		case '\n':
			if depth <= 0 {
				return
			}
			s.pos++
			s.line++
		default:
			s.pos++
		}
	}
}

// skipString moves past the string starting at s.pos, of any of TOML's
// four kinds.
func (s *scanner) skipString() {
	q := s.src[s.pos]
	basic := q == '"'
	delim := s.src[s.pos : s.pos+1]
	if strings.HasPrefix(s.src[s.pos:], strings.Repeat(delim, 3)) {
		delim = strings.Repeat(delim, 3)
	}
	s.pos += len(delim)
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case basic && c == '\\':
			// Skip the escaped character, unless it is a newline to count.
			s.pos++
			if s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		case c == '\n':
			if len(delim) == 1 {
				return
			}
			s.line++
			s.pos++
		case strings.HasPrefix(s.src[s.pos:], delim):
			s.pos += len(delim)
			// """a""""" ends with two quotes of content before the delimiter.
			for i := 0; len(delim) == 3 && i < 2 && s.pos < len(s.src) && s.src[s.pos] == q; i++ {
				s.pos++
			}
			return
		default:
			s.pos++
		}
	}
}
