package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctltest"
)

// lockedBuffer lets a test read output while a command is still writing.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type result struct {
	code           int
	stdout, stderr string
}

func meshctl(ctx context.Context, stdin string, args ...string) result {
	var out, errOut lockedBuffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// start serves a fake daemon and returns it with the -socket flag for it.
func start(t *testing.T) (*ctltest.Backend, string) {
	t.Helper()
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	return b, "-socket=" + srv.Socket
}

func check(t *testing.T, r result, wantCode int, wantStdout string) {
	t.Helper()
	if r.code != wantCode || r.stdout != wantStdout {
		t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q", r.code, r.stdout, r.stderr, wantCode, wantStdout)
	}
}

func TestCommands(t *testing.T) {
	b, sock := start(t)
	b.AddRoom(ctl.Room{Name: "lobby", Fingerprint: "feedbeef", Members: 2})
	ctx := context.Background()

	check(t, meshctl(ctx, "", sock, "host", "general"), 0, "hosting general@abcd1234\n")
	check(t, meshctl(ctx, "", sock, "say", "general", "hello", "world"), 0, "general@abcd1234 #1\n")
	check(t, meshctl(ctx, "from stdin\nsecond line\n", sock, "say", "general", "-"), 0, "general@abcd1234 #2\n")
	check(t, meshctl(ctx, "", sock, "say", "general", "--", "-5", "degrees"), 0, "general@abcd1234 #3\n")
	// Global flags after the command, in either spelling.
	check(t, meshctl(ctx, "", "say", "general", "--json", "hi", sock), 0,
		"{\n  \"room\": \"general@abcd1234\",\n  \"seq\": 4\n}\n")
	check(t, meshctl(ctx, "", "join", "lobby", "-nick", "al", sock), 0, "joined lobby@feedbeef as al\n")
	check(t, meshctl(ctx, "", sock, "leave", "lobby@feedbeef"), 0, "left lobby@feedbeef\n")
	check(t, meshctl(ctx, "", sock, "who", "general"), 0,
		"general@abcd1234: 1 member\n"+
			"NICK    FINGERPRINT  PATH       ROLE  HOLDS\n"+
			"tester  abcd1234     multicast  host  -\n")
	check(t, meshctl(ctx, "", sock, "tail", "general", "-n"), 0,
		"#1 <tester> hello world\n"+
			"#2 <tester> from stdin\\nsecond line\n"+
			"#3 <tester> -5 degrees\n"+
			"#4 <tester> hi\n")
	check(t, meshctl(ctx, "", sock, "tail", "general", "-since", "3", "-n", "--json"), 0,
		`{"kind":"message","room":"general@abcd1234","seq":4,"nick":"tester","fingerprint":"abcd1234","text":"hi"}`+"\n"+
			`{"kind":"snapshot_end","room":"general"}`+"\n")

	r := meshctl(ctx, "", sock, "rooms", "--json")
	var rooms []ctl.Room
	if err := json.Unmarshal([]byte(r.stdout), &rooms); err != nil || r.code != 0 || len(rooms) != 2 {
		t.Errorf("rooms --json: exit %d, %d rooms (%v), stdout %q", r.code, len(rooms), err, r.stdout)
	}
	r = meshctl(ctx, "", sock, "status")
	for _, want := range []string{"meshd test-1, up 1m30s (boot 3)\n", "\nrooms        1 hosted, 1 joined, 2 known\ncounters:\n", "  packets_in            10\n", "  ctl_requests_refused  0\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("status: exit %d, stdout %q; want it to contain %q", r.code, r.stdout, want)
		}
	}
}

// TestSayLines: say -lines sends each line of its text as a message of
// its own, blank lines left out, in requests of at most ctl.MaxSayLines.
func TestSayLines(t *testing.T) {
	_, sock := start(t)
	ctx := context.Background()
	check(t, meshctl(ctx, "", sock, "host", "general"), 0, "hosting general@abcd1234\n")
	check(t, meshctl(ctx, "one\r\ntwo\n\nthree\n", sock, "say", "general", "-", "-lines"), 0, "general@abcd1234 #1-#3\n")
	check(t, meshctl(ctx, "", sock, "say", "-lines", "general", "just one"), 0, "general@abcd1234 #4\n")
	check(t, meshctl(ctx, "", sock, "tail", "general", "-n"), 0,
		"#1 <tester> one\n#2 <tester> two\n#3 <tester> three\n#4 <tester> just one\n")
	var many strings.Builder
	for i := range ctl.MaxSayLines + 2 {
		fmt.Fprintf(&many, "line %d\n", i)
	}
	check(t, meshctl(ctx, many.String(), sock, "say", "general", "-", "-lines"), 0,
		fmt.Sprintf("general@abcd1234 #5-#%d\ngeneral@abcd1234 #%d-#%d\n", 4+ctl.MaxSayLines, 5+ctl.MaxSayLines, 6+ctl.MaxSayLines))
}

func TestSearchAndPeers(t *testing.T) {
	b, sock := start(t)
	b.AddRoom(ctl.Room{Name: "far", Fingerprint: "feedbeef", Addrs: []string{"10.3.0.2:7702"}})
	ctx := context.Background()
	check(t, meshctl(ctx, "", sock, "rooms", "--search", "far", "--max-ttl", "8"), 0,
		"found far with TTL 1 in 40ms\n"+
			"ROOM          ACCESS  HERE  MEMBERS  ADDRESSES      EXPIRES\n"+
			"far@feedbeef  open    -     -        10.3.0.2:7702  -\n")
	r := meshctl(ctx, "", sock, "rooms", "--search", "nowhere")
	if r.code != 1 || !strings.Contains(r.stderr, `room "nowhere": no answer to a search up to TTL 32`) {
		t.Errorf("search for a missing room: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := meshctl(ctx, "", sock, "rooms", "--max-ttl", "3"); r.code != 2 {
		t.Errorf("--max-ttl without --search: exit %d, want 2", r.code)
	}

	check(t, meshctl(ctx, "", sock, "peer", "list"), 0, "no static peers; add one with \"meshctl peer add ADDR:PORT\"\n")
	check(t, meshctl(ctx, "", sock, "peer", "add", "10.0.0.2:7701"), 0, "added peer 10.0.0.2:7701 (until meshd restarts; add it to discovery.peers to keep it)\n")
	check(t, meshctl(ctx, "", sock, "peer", "list"), 0, "10.0.0.2:7701\n")
	check(t, meshctl(ctx, "", sock, "peer", "list", "--json"), 0, "{\n  \"peers\": [\n    \"10.0.0.2:7701\"\n  ]\n}\n")
	check(t, meshctl(ctx, "", sock, "peer", "remove", "10.0.0.2:7701"), 0, "removed peer 10.0.0.2:7701\n")
	if r := meshctl(ctx, "", sock, "peer", "remove", "10.0.0.2:7701"); r.code != 1 || !strings.Contains(r.stderr, "is not a peer") {
		t.Errorf("removing a peer twice: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := meshctl(ctx, "", sock, "peer", "add", "nonsense"); r.code != 1 {
		t.Errorf("peer add nonsense: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := meshctl(ctx, "", sock, "peer", "frob"); r.code != 2 {
		t.Errorf("peer frob: exit %d, want 2", r.code)
	}
}

func TestErrors(t *testing.T) {
	_, sock := start(t)
	missing := filepath.Join(t.TempDir(), "none.sock")
	ctx := context.Background()
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantStderr string // prefix
	}{
		{"no command", "", []string{sock}, 2, "usage: meshctl"},
		{"unknown command", "", []string{sock, "frobnicate"}, 2, "meshctl: unknown command \"frobnicate\"\nRun \"meshctl help\" for usage.\n"},
		{"missing room", "", []string{sock, "host"}, 2, "meshctl: usage: meshctl host ROOM [-invite | -passphrase-file FILE]\n"},
		{"invite and passphrase", "", []string{sock, "host", "x", "-invite", "-passphrase-file", "-"}, 2, "meshctl: a room is invite-only or has a passphrase, not both\n"},
		{"empty passphrase", "\n", []string{sock, "join", "general", "-passphrase-file", "-"}, 2, "meshctl: passphrase: the first line of - is empty\n"},
		{"extra args", "", []string{sock, "leave", "a", "b"}, 2, "meshctl: usage: meshctl leave ROOM\n"},
		{"bad flag", "", []string{sock, "rooms", "-x"}, 2, "meshctl: flag provided but not defined: -x\n"},
		{"bad since", "", []string{sock, "tail", "general", "-since", "soon"}, 2, "meshctl: invalid value \"soon\" for flag -since"},
		{"no text", "", []string{sock, "say", "general"}, 2, "meshctl: usage: meshctl say ROOM TEXT..."},
		{"empty stdin", "\n", []string{sock, "say", "general", "-"}, 2, "meshctl: nothing to say: the message is empty\n"},
		{"api error", "", []string{sock, "join", "nope"}, 1,
			"meshctl: room \"nope\" is not known: run \"meshctl rooms\" to see the rooms on this network\n"},
		{"not running", "", []string{"-socket", missing, "status"}, 1,
			"meshctl: meshd is not running (nothing listening on " + missing + "); start it with \"meshd\""},
		{"not running tail", "", []string{"tail", "general", "-socket", missing}, 1,
			"meshctl: meshd is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := meshctl(ctx, tt.stdin, tt.args...)
			if r.code != tt.wantCode || !strings.HasPrefix(r.stderr, tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr starting %q", r.code, r.stderr, tt.wantCode, tt.wantStderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := meshctl(context.Background(), "", args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("meshctl %v: exit %d, stderr %q; want 0 and no error", args, r.code, r.stderr)
		}
		for _, cmd := range commands {
			if !strings.Contains(r.stdout, "\n  "+cmd.synopsis()+"\n") {
				t.Errorf("meshctl %v does not list %q:\n%s", args, cmd.name, r.stdout)
			}
		}
	}
	r := meshctl(context.Background(), "", "join", "-h")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: meshctl join ROOM [-nick NICK] [-passphrase-file FILE]\n") {
		t.Errorf("join -h: exit %d, stdout %q", r.code, r.stdout)
	}
}

// waitOutput polls until out contains want.
func waitOutput(t *testing.T, out *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never contained %q", out.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tailInBackground runs meshctl tail until ctx ends and returns its output
// buffers and a channel that receives the exit code.
func tailInBackground(ctx context.Context, args ...string) (out, errOut *lockedBuffer, code <-chan int) {
	out, errOut = new(lockedBuffer), new(lockedBuffer)
	c := make(chan int, 1)
	go func() { c <- run(ctx, append([]string{"tail"}, args...), strings.NewReader(""), out, errOut) }()
	return out, errOut, c
}

func TestTailFollows(t *testing.T) {
	b, sock := start(t)
	ctx := context.Background()
	check(t, meshctl(ctx, "", sock, "host", "general"), 0, "hosting general@abcd1234\n")
	check(t, meshctl(ctx, "", sock, "say", "general", "before"), 0, "general@abcd1234 #1\n")

	tailCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	out, errOut, code := tailInBackground(tailCtx, "general", sock)
	waitOutput(t, out, "#1 <tester> before\n")
	// The snapshot is out, so the subscription is live.
	check(t, meshctl(ctx, "", sock, "say", "general", "after"), 0, "general@abcd1234 #2\n")
	b.Publish(ctl.Event{Kind: ctl.EventPart, Room: "general@abcd1234", Seq: 3, Nick: "bob\x1b[2J"})
	waitOutput(t, out, "#3 * bob\\x1b[2J left\n")
	interrupt()
	if c := <-code; c != 0 {
		t.Errorf("tail exit code after interrupt = %d, want 0 (stderr %q)", c, errOut.String())
	}
	if want := "#1 <tester> before\n#2 <tester> after\n#3 * bob\\x1b[2J left\n"; out.String() != want {
		t.Errorf("tail output = %q, want %q", out.String(), want)
	}
}

func TestTailOverflow(t *testing.T) {
	b, sock := start(t)
	check(t, meshctl(context.Background(), "", sock, "host", "general"), 0, "hosting general@abcd1234\n")
	out, errOut, code := tailInBackground(context.Background(), "general", "--json", sock)
	waitOutput(t, out, `{"kind":"snapshot_end","room":"general"}`+"\n")
	b.Overflow()
	if c := <-code; c != 1 {
		t.Errorf("tail exit code after overflow = %d, want 1", c)
	}
	if want := "meshctl: fell behind and meshd dropped events after #0"; !strings.HasPrefix(errOut.String(), want) {
		t.Errorf("stderr = %q, want it to start %q", errOut.String(), want)
	}
	if want := `{"kind":"overflow","room":"general"}` + "\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("stdout = %q, want it to end with the overflow event %q", out.String(), want)
	}
}

// TestPrivateRooms drives host -invite, invite, join with an invite and
// a passphrase, and mute against the fake backend.
func TestPrivateRooms(t *testing.T) {
	b, sock := start(t)
	ctx := context.Background()
	check(t, meshctl(ctx, "", sock, "host", "club", "-invite"), 0,
		"hosting club@abcd1234, invite-only: \"meshctl invite club\" makes invites\n")
	r := meshctl(ctx, "", sock, "invite", "club", "-uses", "3", "-expires", "1h")
	if r.code != 0 || r.stdout != "club@abcd1234/TOKEN\n" || !strings.HasPrefix(r.stderr, "admits 3 members until 2030-01-01 01:00 UTC") {
		t.Errorf("invite: %+v", r)
	}
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("open sesame\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	meshctl(ctx, "", sock, "join", "club@abcd1234/TOKEN", "-nick", "ann")
	meshctl(ctx, "", sock, "join", "club", "-passphrase-file", pass)
	meshctl(ctx, "from stdin\n", sock, "join", "club", "-passphrase-file", "-")
	want := []ctl.JoinRequest{
		{Room: "club@abcd1234", Nick: "ann", Invite: "TOKEN"},
		{Room: "club", Passphrase: "open sesame"},
		{Room: "club", Passphrase: "from stdin"},
	}
	if got := b.Joins(); !slices.Equal(got, want) {
		t.Errorf("join requests = %+v, want %+v", got, want)
	}
	// The fake's hosted room has one member to mute: its host.
	nick := ctltest.Nick
	check(t, meshctl(ctx, "", sock, "mute", "club", nick), 0, "muted "+nick+" in club: the host refuses their lines; they still receive the room\n")
	if !b.Muted("club@abcd1234", nick) {
		t.Error("not muted")
	}
	check(t, meshctl(ctx, "", sock, "unmute", "club", nick), 0, "unmuted "+nick+" in club\n")
	if b.Muted("club@abcd1234", nick) {
		t.Error("still muted")
	}
	r = meshctl(ctx, "", sock, "mute", "club", "nobody")
	if r.code != 1 || !strings.Contains(r.stderr, "no member called") {
		t.Errorf("mute of nobody: %+v", r)
	}
}

func TestPrintRooms(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rooms := []ctl.Room{
		{Ref: "lobby@feedbeef", Access: "invite", Members: 2, Addrs: []string{"192.0.2.7:7701", "[2001:db8::7]:7701"}, Expires: now.Add(90 * time.Second)},
		{Ref: "general@abcd1234", Hosted: true, Joined: true, Members: 1, Addrs: []string{"192.0.2.1:7701"}},
		{Ref: "quiet@33333333", Joined: true, State: "connecting", Expires: now.Add(-time.Second)},
		{Ref: "quiet@44444444", KeyChanged: true, Expires: now.Add(time.Minute)},
	}
	var out bytes.Buffer
	if err := printRooms(&out, rooms, now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ROOM              ACCESS  HERE                 MEMBERS  ADDRESSES                          EXPIRES\n" +
		"general@abcd1234  open    host joined          1        192.0.2.1:7701                     -\n" +
		"lobby@feedbeef    invite  -                    2        192.0.2.7:7701,[2001:db8::7]:7701  in 1m30s\n" +
		"quiet@33333333    open    joined (connecting)  -        -                                  expired\n" +
		"quiet@44444444    open    KEY CHANGED          -        -                                  in 1m0s\n"
	if out.String() != want {
		t.Errorf("printRooms =\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	if err := printRooms(&out, nil, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "meshctl host NAME") {
		t.Errorf("printRooms(nil) = %q, want a hint to host a room", out.String())
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, tabs\tand ünïcödé", "plain text, tabs\tand ünïcödé"},
		{"line\nbreak", `line\nbreak`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"del\x7f", `del\x7f`},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFormatMissed: tail says how many lines meshd no longer held for it,
// rather than jumping over them.
func TestFormatMissed(t *testing.T) {
	line, ok := formatEvent(ctl.Event{Kind: ctl.EventMissed, Room: "general@abcd1234", Seq: 5, Through: 104})
	if want := "#5-104 * 100 not shown: meshd keeps only a room's newest lines for tail"; !ok || line != want {
		t.Errorf("formatEvent = %q, %v; want %q", line, ok, want)
	}
}
