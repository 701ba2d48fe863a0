// Command meshctl drives a running meshd through its control socket: list,
// host, join and leave rooms, say things, and follow a room's messages.
//
// It imports only meshd/ctl and the standard library, so it carries none
// of the daemon's transport or crypto code (a test enforces this).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"meshd/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the daemon or the API said no, or meshd is not running
	exitUsage = 2
)

// cli is one invocation: its global flags, streams and client.
type cli struct {
	socket string
	json   bool

	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time
	cmd            command     // the command being run
	client         *ctl.Client // set by parse, once -socket is known
}

// command is one subcommand. run gets the arguments after the command's
// name, flags included, and parses them itself with c.parse.
type command struct {
	name, args, summary string
	run                 func(c *cli, ctx context.Context, args []string) error
}

var commands = []command{
	{"rooms", "[--search ROOM [--max-ttl N]]", "list the rooms this daemon knows: hosted, joined and announced;\n\t--search asks the mesh for ROOM (TTL 1, 2, 4, ... up to N) and lists what answered", (*cli).rooms},
	{"host", "ROOM [-invite | -passphrase-file FILE]", "host a new room called ROOM on this daemon: open to anyone, or invite-only,\n\tor for those who know the passphrase on FILE's first line (- reads standard input)", (*cli).host},
	{"join", "ROOM [-nick NICK] [-passphrase-file FILE]", "join ROOM (a name, or name@fingerprint when the name is shared); a room not\n\tannounced here is searched for first; an invite-only room takes the invite,\n\tname@fingerprint/TOKEN, and a passphrase room the passphrase on FILE's first line", (*cli).join},
	{"peer", "add ADDR:PORT | list | remove ADDR:PORT", "change the static peers that announcements and searches also go to by unicast;\n\tpeers added here last until meshd restarts", (*cli).peer},
	{"leave", "ROOM", "leave ROOM", (*cli).leave},
	{"invite", "ROOM [-uses N] [-expires DURATION]", "print an invite to ROOM, which this daemon hosts invite-only, good for N joins\n\t(default 1, at most 1000) within DURATION (default 24h, at most 8784h)", (*cli).invite},
	{"kick", "ROOM NICK [-ban]", "remove NICK from ROOM, which this daemon hosts; the room's key rotates", (*cli).kick},
	{"mute", "ROOM NICK", "refuse NICK's lines in ROOM, which this daemon hosts; NICK still receives the room", (*cli).mute},
	{"unmute", "ROOM NICK", "accept NICK's lines in ROOM again", (*cli).unmute},
	{"say", "ROOM TEXT... | say ROOM - [-wait 5s] [-lines]", "send TEXT to ROOM; with -, send standard input; -wait reports how many members got it; -lines sends each line as a message", (*cli).say},
	{"who", "ROOM", "list ROOM's members", (*cli).who},
	{"tail", "ROOM [-since SEQ] [-n]", "print ROOM's recent messages, then follow new ones until interrupted;\n\t-since SEQ shows only messages after SEQ, -n exits instead of following", (*cli).tail},
	{"status", "", "show the daemon's identity, rooms and counters", (*cli).status},
	{"stats", "", "explain the daemon's counters, grouped by what they count, and its memory use", (*cli).stats},
	{"help", "", "show this help", nil},
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	err := c.dispatch(ctx, args)
	var uerr *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "meshctl: %v\nRun \"meshctl help\" for usage.\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "meshctl: %v\n", err)
	return exitError
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	// Global flags may come before the command; flag.Parse stops at the
	// first non-flag, which is the command.
	fs := c.flagSet("meshctl")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
		}
		return c.flagError(err)
	}
	if fs.NArg() == 0 {
		c.usage(c.stderr)
		return usageErrorf("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		c.usage(c.stdout)
		return nil
	}
	cmd, ok := lookup(name)
	if !ok {
		return usageErrorf("unknown command %q", name)
	}
	c.cmd = cmd
	return cmd.run(c, ctx, rest)
}

func lookup(name string) (command, bool) {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

func (c *cli) usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: meshctl [-socket PATH] [-json] COMMAND [ARGS]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(&b, "  %s\n\t%s\n", cmd.synopsis(), cmd.summary)
	}
	fmt.Fprintf(&b, `
Global flags, accepted before or after the command:
  -socket PATH  meshd's control socket (default $MESHD_SOCKET, else %s
                if it exists, else the socket of a meshd run by this user)
  -json         print the daemon's JSON answers instead of text

Use -- before text that starts with "-": meshctl say general -- -1 from me.
`, ctl.SystemSocket)
	io.WriteString(w, b.String())
}

// flagSet returns a FlagSet holding the global flags, so that they work
// after the command too.
func (c *cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are reported once, by run, in meshctl's own format, and -h
	// is answered by the caller.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.socket, "socket", c.socket, "meshd's control socket")
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	return fs
}

func (cmd command) synopsis() string { return strings.TrimSpace(cmd.name + " " + cmd.args) }

func (c *cli) flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageErrorf("%v", err)
}

// parse parses the command's arguments, letting flags and positional
// arguments mix (meshctl tail general -json), and checks the number of
// positional arguments: at least min, at most max (max < 0: no limit).
func (c *cli) parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(c.stdout, "usage: meshctl %s\n\t%s\n", c.cmd.synopsis(), c.cmd.summary)
			}
			return nil, c.flagError(err)
		}
		rest := fs.Args()
		// flag stops at a non-flag, or after consuming "--"; after "--"
		// everything is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, usageErrorf("usage: meshctl %s", c.cmd.synopsis())
	}
	// -socket may have been among the command's flags.
	c.client = &ctl.Client{Socket: c.socket}
	return pos, nil
}
