package daemon

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// load writes src to meshd.toml in a temporary directory and loads it. It
// returns the error's text with that directory removed, so that messages
// can be compared whole.
func load(t *testing.T, src string) (Config, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "meshd.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err == nil {
		if c.Path != path {
			t.Errorf("Path = %q, want %q", c.Path, path)
		}
		return c, ""
	}
	return c, strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
}

func TestDefaultValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestDefaultStateDirFromSystemd(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/meshd:/var/lib/other")
	if got := Default().StateDir; got != "/var/lib/meshd" {
		t.Errorf("StateDir = %q, want /var/lib/meshd", got)
	}
}

func TestLoadFull(t *testing.T) {
	got, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Path:        "testdata/full.toml",
		Version:     1,
		StateDir:    "/srv/meshd/state",
		Socket:      "/srv/meshd/ctl.sock",
		SocketGroup: "wheel",
		Nick:        "relay-7",
		LogLevel:    "debug",
		MemoryLimit: 48 << 20,
		Discovery: Discovery{
			Group:      netip.MustParseAddrPort("239.1.2.3:9001"),
			Interval:   Duration(90 * time.Second),
			Lifetime:   Duration(5 * time.Minute),
			TTL:        4,
			Interfaces: []string{"bat0", "br-lan"},
			Exclude:    []string{"wan"},
			SearchTTL:  8,
			Relay:      true,
			RelayHops:  3,
			Peers:      []netip.AddrPort{netip.MustParseAddrPort("10.1.0.1:9001"), netip.MustParseAddrPort("10.2.0.1:9001")},
		},
		Host: HostConfig{
			Listen:     netip.MustParseAddrPort("[::]:0"),
			Advertise:  []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
			DataGroups: netip.MustParsePrefix("239.7.0.0/16"),
			DataPort:   9003,
			History:    5000,
			MemberRate: 10,
			HistoryDir: "/var/lib/meshd/history",
		},
		Member: MemberConfig{Path: "tcp"},
		Rooms: []Room{
			{Name: "general"},
			{Name: "ops", Access: "invite", Allow: []string{"abcdefgh", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
			{Name: "secret", Access: "passphrase", PassphraseFile: "/etc/meshd/secret.pass"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(full.toml) =\n%+v\nwant\n%+v", got, want)
	}
	if got.SlogLevel().String() != "DEBUG" {
		t.Errorf("SlogLevel() = %v, want DEBUG", got.SlogLevel())
	}
}

const example = "../configs/meshd.toml"

// The example sets every key to its default, so loading it must change
// nothing: a default changed in one place but not the other fails here.
func TestLoadExampleIsDefault(t *testing.T) {
	got, err := Load(example)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = example
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%+v\nwant Default()\n%+v", example, got, want)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	// Keys may be commented out, since some defaults depend on the host.
	lines := keyLines(regexp.MustCompile(`(?m)^#(\S)`).ReplaceAllString(string(src), "$1"))
	for _, key := range keys() {
		indexed := regexp.MustCompile(`^room\.`).ReplaceAllString(key, "room[0].")
		if _, ok := lines[indexed]; !ok {
			t.Errorf("%s does not set %s", example, key)
		}
	}
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "missing version",
			src:  "nick = \"x\"\n",
			want: `meshd.toml: version: missing; add "version = 1" at the top`,
		},
		{
			name: "empty file",
			src:  "",
			want: `meshd.toml: version: missing; add "version = 1" at the top`,
		},
		{
			name: "unsupported version",
			src:  "version = 2\n",
			want: `meshd.toml:1: version: 2 is not supported; this meshd reads version 1`,
		},
		{
			name: "syntax error",
			src:  "version = 1\n\nnick = \n",
			want: `meshd.toml:3:8: expected value but found '\n' instead`,
		},
		{
			name: "unknown key with suggestion",
			src:  "version = 1\n[host]\nlisen = \"0.0.0.0:1\"\n",
			want: `meshd.toml:3: host.lisen: unknown key (did you mean "host.listen"?)`,
		},
		{
			name: "unknown key in another case",
			src:  "version = 1\n[discovery]\nTTL = 2\n",
			want: `meshd.toml:3: discovery.TTL: unknown key (did you mean "discovery.ttl"?)`,
		},
		{
			name: "key under the wrong table",
			src:  "version = 1\nttl = 2\n",
			want: `meshd.toml:2: ttl: unknown key (did you mean "discovery.ttl"?)`,
		},
		{
			name: "unknown table",
			src:  "version = 1\n[hots]\nlisten = \"0.0.0.0:1\"\n",
			want: `meshd.toml:2: hots: unknown key (did you mean "host"?)`,
		},
		{
			name: "unknown key without suggestion",
			src:  "version = 1\nfrobnicate = true\n",
			want: `meshd.toml:2: frobnicate: unknown key`,
		},
		{
			name: "unknown key in a room",
			src:  "version = 1\n[[room]]\nname = \"a\"\n[[room]]\nnmae = \"b\"\n",
			want: `meshd.toml:5: room[1].nmae: unknown key (did you mean "room[1].name"?)`,
		},
		{
			name: "type errors",
			src: `version = 1
log_level = 3
[discovery]
group = "not-an-addr"
announce_interval = 5
ttl = "x"
interfaces = "bat0"
[host]
listen = ["0.0.0.0:1"]
advertise = ["10.0.0.1", 7]
data_groups = "239.0.0.0/40"
data_port = 1.5
`,
			want: `meshd.toml:2: log_level: want a string, not the integer 3
meshd.toml:4: discovery.group: "not-an-addr" is not an IP address and port such as "192.0.2.1:7702"
meshd.toml:5: discovery.announce_interval: want a duration such as "5s", not the integer 5
meshd.toml:6: discovery.ttl: want an integer, not the string "x"
meshd.toml:7: discovery.interfaces: want an array, not the string "bat0"
meshd.toml:9: host.listen: want an IP address and port such as "192.0.2.1:7702", not an array
meshd.toml:10: host.advertise[1]: want an IP address such as "192.0.2.1", not the integer 7
meshd.toml:11: host.data_groups: "239.0.0.0/40" is not an address prefix such as "239.255.78.0/24"
meshd.toml:12: host.data_port: want an integer, not the float 1.5`,
		},
		{
			name: "discovery beyond the link",
			src: `version = 1
[discovery]
relay = "yes"
relay_hops = 0
search_max_ttl = 256
peers = ["10.0.0.2:7701", "239.1.1.1:7701", "10.0.0.3:0", "10.0.0.2:7701", "[fd00::1]:7701", "nope"]
exclude_interfaces = ["wan", ""]
`,
			want: `meshd.toml:3: discovery.relay: want true or false, not the string "yes"
meshd.toml:4: discovery.relay_hops: 0 is out of range; use 1..32
meshd.toml:5: discovery.search_max_ttl: 256 is out of range; use 1..255
meshd.toml:6: discovery.peers[5]: "nope" is not an IP address and port such as "192.0.2.1:7702"
meshd.toml:7: discovery.exclude_interfaces[1]: empty interface name`,
		},
		{
			name: "peers",
			src: `version = 1
[discovery]
peers = ["10.0.0.2:7701", "239.1.1.1:7701", "10.0.0.3:0", "10.0.0.2:7701", "[fd00::1]:7701"]
`,
			want: `meshd.toml:3: discovery.peers[1]: "239.1.1.1:7701" is not a unicast address; a peer is one machine
meshd.toml:3: discovery.peers[2]: "10.0.0.3:0" has port 0; use the peer's discovery port
meshd.toml:3: discovery.peers[3]: "10.0.0.2:7701" duplicates discovery.peers[0]
meshd.toml:3: discovery.peers[4]: "[fd00::1]:7701" is not an IPv4 address and port such as "10.0.0.2:7701"`,
		},
		{
			name: "table of the wrong type",
			src:  "version = 1\ndiscovery = 5\nroom = [\"general\"]\n",
			want: `meshd.toml:2: discovery: want a table, not the integer 5` + "\n" +
				`meshd.toml:3: room[0]: want a table, not the string "general"`,
		},
		{
			name: "ranges",
			src: `version = 1
[discovery]
group = "10.1.1.1:7701"
announce_interval = "50ms"
room_lifetime = "60ms"
ttl = 300
[host]
data_port = 0
`,
			want: `meshd.toml:3: discovery.group: "10.1.1.1:7701" is not an IPv4 multicast address and port such as "239.255.77.1:7701"
meshd.toml:4: discovery.announce_interval: "50ms" is out of range; use 100ms..1h
meshd.toml:5: discovery.room_lifetime: "60ms" is less than twice discovery.announce_interval ("50ms"); use at least "100ms"
meshd.toml:6: discovery.ttl: 300 is out of range; use 1..255
meshd.toml:8: host.data_port: 0 is out of range; use 1..65535`,
		},
		{
			// The problem is with room_lifetime, which the file leaves at
			// its default, so the line is its table's.
			name: "lifetime shorter than interval",
			src:  "version = 1\n\n[discovery]\nannounce_interval = \"20s\"\n",
			want: `meshd.toml:3: discovery.room_lifetime: "30s" is less than twice discovery.announce_interval ("20s"); use at least "40s"`,
		},
		{
			name: "addresses",
			src: `version = 1
discovery.group = "239.255.77.1:0"
host.listen = ""
host.advertise = ["0.0.0.0", "10.0.0.1", "239.1.1.1"]
host.data_groups = "239.255.78.9/24"
`,
			want: `meshd.toml:2: discovery.group: port 0 is not allowed; every node must use the same fixed port
meshd.toml:3: host.listen: "" is not an IP address and port such as "0.0.0.0:7702"
meshd.toml:4: host.advertise[0]: "0.0.0.0" cannot be advertised; use an address peers can reach
meshd.toml:4: host.advertise[2]: "239.1.1.1" cannot be advertised; use an address peers can reach
meshd.toml:5: host.data_groups: "239.255.78.9/24" has bits set after the prefix; use "239.255.78.0/24"`,
		},
		{
			name: "names and paths",
			src: `version = 1
state_dir = "state"
socket = ""
nick = "two words"
log_level = "verbose"
discovery.interfaces = ["bat0", "", "bat0"]
`,
			want: `meshd.toml:2: state_dir: "state" is not an absolute path
meshd.toml:3: socket: "" is not an absolute path
meshd.toml:4: nick: nick "two words" contains ' '; use letters, digits and punctuation
meshd.toml:5: log_level: "verbose" is not a log level; use debug, info, warn or error
meshd.toml:6: discovery.interfaces[1]: empty interface name
meshd.toml:6: discovery.interfaces[2]: "bat0" duplicates discovery.interfaces[0]`,
		},
		{
			name: "memory limit too low",
			src:  "version = 1\nmemory_limit = \"4MiB\"\n",
			want: `meshd.toml:2: memory_limit: "4MiB" is below the 8MiB an idle meshd needs, where the garbage collector would run without pause; use at least "8MiB", "auto" or "off"`,
		},
		{
			name: "memory limit not a size",
			src:  "version = 1\nmemory_limit = \"24MB\"\n",
			want: `meshd.toml:2: memory_limit: "24MB" is not a size such as "24MiB", "auto" or "off"`,
		},
		{
			name: "rooms",
			src: `version = 1

[[room]]
name = "general"

[[room]]
name = "a@b"

[[room]]
name = "general"
`,
			want: `meshd.toml:7: room[1].name: room name "a@b" contains '@'; use letters, digits and punctuation other than '@' and '/'
meshd.toml:10: room[2].name: "general" duplicates room[0]`,
		},
		{
			name: "room access",
			src: `version = 1

[[room]]
name = "a"
access = "closed"

[[room]]
name = "b"
allow = ["abcdefgh"]

[[room]]
name = "c"
access = "invite"
allow = ["not-a-key"]

[[room]]
name = "d"
access = "passphrase"

[[room]]
name = "e"
access = "invite"
passphrase_file = "/etc/p"

[[room]]
name = "f"
access = "passphrase"
passphrase_file = "p"
`,
			want: `meshd.toml:5: room[0].access: "closed" is not a room access; use open, invite or passphrase
meshd.toml:9: room[1].allow: lists members, but the room is open; set access = "invite" or remove allow
meshd.toml:14: room[2].allow[0]: "not-a-key" is neither a member's key (64 hex digits, as "meshctl status" shows it) nor its 8-letter fingerprint
meshd.toml:16: room[3].passphrase_file: missing; a passphrase room needs the file that holds its passphrase
meshd.toml:23: room[4].passphrase_file: is set, but the room is invite; set access = "passphrase" or remove passphrase_file
meshd.toml:28: room[5].passphrase_file: "p" is not an absolute path`,
		},
		{
			name: "several problems in line order",
			src: `# no version
[host]
data_port = 70000
lisen = "x"

[discovery]
ttl = 0
`,
			want: `meshd.toml: version: missing; add "version = 1" at the top
meshd.toml:3: host.data_port: 70000 is out of range; use 1..65535
meshd.toml:4: host.lisen: unknown key (did you mean "host.listen"?)
meshd.toml:7: discovery.ttl: 0 is out of range; use 1..255`,
		},
		{
			// Lines inside multi-line strings and arrays must not be
			// taken for keys, or counted wrong.
			name: "lines after multi-line values",
			src: `version = 1
nick = """
ttl = 9"""
socket_group = '''
x'''
[discovery]
interfaces = [
  "a", # ]
  'b',
]
"ttl" = -1
`,
			want: `meshd.toml:2: nick: nick "ttl = 9" contains ' '; use letters, digits and punctuation
meshd.toml:11: discovery.ttl: -1 is out of range; use 1..255`,
		},
		{
			name: "inline table",
			src:  "version = 1\nhost = { data_port = 0, listen = 5 }\n",
			want: `meshd.toml:2: host.data_port: 0 is out of range; use 1..65535` + "\n" +
				`meshd.toml:2: host.listen: want an IP address and port such as "192.0.2.1:7702", not the integer 5`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := load(t, tt.src)
			if got != tt.want {
				t.Errorf("Load errors:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestLoadProblemsAreListed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshd.toml")
	if err := os.WriteFile(path, []byte("version = 1\n[discovery]\nttl = 0\n[[room]]\nname = \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var cerr *ConfigError
	if !errors.As(err, &cerr) {
		t.Fatalf("Load error %v is not a *ConfigError", err)
	}
	want := []Problem{
		{File: path, Line: 3, Key: "discovery.ttl", Msg: "0 is out of range; use 1..255"},
		{File: path, Line: 5, Key: "room[0].name", Msg: "room name is empty"},
	}
	if !reflect.DeepEqual(cerr.Problems, want) {
		t.Errorf("Problems = %+v, want %+v", cerr.Problems, want)
	}
}

func TestLoadOversized(t *testing.T) {
	_, got := load(t, "version = 1\n"+strings.Repeat("# padding\n", maxFileSize/10))
	if want := "meshd.toml: file is larger than 1 MiB; is it the right file?"; got != want {
		t.Errorf("Load error = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error = %v, want fs.ErrNotExist", err)
	}
}

func TestValidateNamesProblems(t *testing.T) {
	c := Default()
	c.Path = "/etc/meshd/meshd.toml"
	c.Discovery.TTL = 0
	c.Rooms = []Room{{Name: "a"}, {Name: "a"}}
	want := "/etc/meshd/meshd.toml: discovery.ttl: 0 is out of range; use 1..255\n" +
		`/etc/meshd/meshd.toml: room[1].name: "a" duplicates room[0]`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

func FuzzLoad(f *testing.F) {
	for _, path := range []string{"testdata/full.toml", example} {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		path := filepath.Join(dir, "meshd.toml")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			var cerr *ConfigError
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("Load error %v is not a *ConfigError with problems", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration that does not validate: %v", err)
		}
	})
}

func TestLifetimeFitsTheWire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.toml")
	if err := os.WriteFile(path, []byte("version = 1\n[discovery]\nroom_lifetime = \"20h\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), ":3: discovery.room_lifetime: \"20h0m0s\" is out of range") {
		t.Fatalf("Load = %v, want room_lifetime out of range at line 3", err)
	}
}

func TestHistoryAndPathChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshd.toml")
	src := "version = 1\n[host]\nhistory = 3\nhistory_dir = \"rel/dir\"\n[member]\npath = \"carrier-pigeon\"\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	for _, want := range []string{
		":3: host.history: 3 is out of range",
		":4: host.history_dir: \"rel/dir\" is not an absolute path",
		":6: member.path: \"carrier-pigeon\" is not a path; use auto, multicast or tcp",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v, want a problem containing %q", err, want)
		}
	}
}

// ByteSize reads GOMEMLIMIT's syntax and writes back what it read.
func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ByteSize
		out  string
	}{
		{"off", 0, "off"},
		{"auto", MemoryLimitAuto, "auto"},
		{"0", 0, "off"},
		{"24MiB", 24 << 20, "24MiB"},
		{"1536KiB", 1536 << 10, "1536KiB"},
		{"2GiB", 2 << 30, "2GiB"},
		{"1TiB", 1 << 40, "1TiB"},
		{"1000", 1000, "1000B"},
		{"1000B", 1000, "1000B"},
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(c.in)); err != nil || b != c.want {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", c.in, b, err, c.want)
		}
		if got := b.String(); got != c.out {
			t.Errorf("%d.String() = %q, want %q", b, got, c.out)
		}
	}
	for _, in := range []string{"", "MiB", "24MB", "-1", "1.5GiB", "24 MiB", "16777216TiB", "OFF", "Auto"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) = %d, want an error", in, b)
		}
	}
}
