package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"meshd/ctl"
)

func (c *cli) rooms(ctx context.Context, args []string) error {
	fs := c.flagSet("rooms")
	search := fs.String("search", "", "search the mesh for this room (name or name@fingerprint)")
	maxTTL := fs.Int("max-ttl", 0, "highest TTL of the search (default: the daemon's discovery.search_max_ttl)")
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *search != "" {
		if *maxTTL < 0 || *maxTTL > 255 {
			return usageErrorf("-max-ttl %d is out of range 1..255", *maxTTL)
		}
		res, err := c.client.Search(ctx, ctl.SearchRequest{Name: *search, MaxTTL: *maxTTL})
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(res)
		}
		how := fmt.Sprintf("with TTL %d in %s", res.TTL, time.Duration(res.Elapsed).Round(time.Millisecond))
		if res.TTL == 0 {
			how = "hosted here"
		}
		fmt.Fprintf(c.stdout, "found %s %s\n", clean(*search), how)
		return printRooms(c.stdout, res.Rooms, c.now())
	} else if *maxTTL != 0 {
		return usageErrorf("-max-ttl goes with -search")
	}
	rooms, err := c.client.Rooms(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(rooms)
	}
	return printRooms(c.stdout, rooms, c.now())
}

func (c *cli) host(ctx context.Context, args []string) error {
	fs := c.flagSet("host")
	invite := fs.Bool("invite", false, "admit only members with an invite (meshctl invite)")
	passFile := fs.String("passphrase-file", "", "admit only members who know the passphrase on this file's first line; - reads standard input")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	req := ctl.HostRequest{Name: pos[0]}
	switch {
	case *invite && *passFile != "":
		return usageErrorf("a room is invite-only or has a passphrase, not both")
	case *invite:
		req.Access = ctl.AccessInvite
	case *passFile != "":
		req.Access = ctl.AccessPassphrase
		if req.Passphrase, err = c.readPassphrase(*passFile); err != nil {
			return err
		}
	}
	room, err := c.client.Host(ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(room)
	}
	what := ""
	switch req.Access {
	case ctl.AccessInvite:
		what = fmt.Sprintf(", invite-only: \"meshctl invite %s\" makes invites", clean(room.Name))
	case ctl.AccessPassphrase:
		what = ", for those who know the passphrase"
	}
	_, err = fmt.Fprintf(c.stdout, "hosting %s%s\n", clean(room.Ref), what)
	return err
}

// maxPassphrase bounds a passphrase: it is one line.
const maxPassphrase = 1024

// readPassphrase returns the first line of the file at path, or of
// standard input for "-". Passphrases come from files, not arguments,
// which other users can read in the process list.
func (c *cli) readPassphrase(path string) (string, error) {
	var r io.Reader = c.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("passphrase: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPassphrase+1))
	if err != nil {
		return "", fmt.Errorf("passphrase: %w", err)
	}
	if len(b) > maxPassphrase {
		return "", fmt.Errorf("passphrase: longer than %d bytes; a passphrase is one line", maxPassphrase)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", usageErrorf("passphrase: the first line of %s is empty", path)
	}
	return line, nil
}

func (c *cli) join(ctx context.Context, args []string) error {
	fs := c.flagSet("join")
	nick := fs.String("nick", "", "nick to use in the room (default: the daemon's nick)")
	passFile := fs.String("passphrase-file", "", "the room's passphrase is on this file's first line; - reads standard input")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	// An invite is name@fingerprint/TOKEN: room names have no '/'.
	ref, token, _ := strings.Cut(pos[0], "/")
	req := ctl.JoinRequest{Room: ref, Nick: *nick, Invite: token}
	if *passFile != "" {
		if req.Passphrase, err = c.readPassphrase(*passFile); err != nil {
			return err
		}
	}
	room, err := c.client.Join(ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(room)
	}
	_, err = fmt.Fprintf(c.stdout, "joined %s as %s\n", clean(room.Ref), clean(room.Nick))
	return err
}

func (c *cli) peer(ctx context.Context, args []string) error {
	pos, err := c.parse(c.flagSet("peer"), args, 1, 2)
	if err != nil {
		return err
	}
	switch {
	case pos[0] == "list" && len(pos) == 1:
		peers, err := c.client.Peers(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(ctl.Peers{Peers: peers})
		}
		if len(peers) == 0 {
			_, err = fmt.Fprintln(c.stdout, `no static peers; add one with "meshctl peer add ADDR:PORT"`)
			return err
		}
		for _, p := range peers {
			fmt.Fprintln(c.stdout, clean(p))
		}
		return nil
	case pos[0] == "add" && len(pos) == 2:
		if err := c.client.AddPeer(ctx, pos[1]); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(c.stdout, "added peer %s (until meshd restarts; add it to discovery.peers to keep it)\n", clean(pos[1]))
		}
		return nil
	case pos[0] == "remove" && len(pos) == 2:
		if err := c.client.RemovePeer(ctx, pos[1]); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(c.stdout, "removed peer %s\n", clean(pos[1]))
		}
		return nil
	}
	return usageErrorf("usage: meshctl %s", c.cmd.synopsis())
}

func (c *cli) kick(ctx context.Context, args []string) error {
	fs := c.flagSet("kick")
	ban := fs.Bool("ban", false, "keep the member out until the host restarts, not ten minutes")
	pos, err := c.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if err := c.client.Kick(ctx, pos[0], ctl.KickRequest{Nick: pos[1], Ban: *ban}); err != nil {
		return err
	}
	if c.json {
		return nil // the API answers 204: there is nothing to print
	}
	what := "kicked"
	if *ban {
		what = "banned"
	}
	_, err = fmt.Fprintf(c.stdout, "%s %s from %s; the room key rotated\n", what, clean(pos[1]), clean(pos[0]))
	return err
}

func (c *cli) invite(ctx context.Context, args []string) error {
	fs := c.flagSet("invite")
	uses := fs.Int("uses", 1, "how many members the invite admits, 1 to 1000")
	expires := fs.Duration("expires", 24*time.Hour, "how long the invite lasts, up to 8784h (366 days)")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	inv, err := c.client.Invite(ctx, pos[0], ctl.InviteRequest{Uses: *uses, Expires: ctl.Duration(*expires)})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(inv)
	}
	// The invite alone on standard output, for scripts; how to use it on
	// standard error.
	if _, err := fmt.Fprintln(c.stdout, clean(inv.Invite)); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stderr, "admits %d %s until %s; the guest runs: meshctl join %s\n",
		inv.Uses, plural(inv.Uses, "member", "members"), inv.Expires.UTC().Format("2006-01-02 15:04 UTC"), clean(inv.Invite))
	return err
}

func (c *cli) mute(ctx context.Context, args []string) error   { return c.setMute(ctx, args, true) }
func (c *cli) unmute(ctx context.Context, args []string) error { return c.setMute(ctx, args, false) }

func (c *cli) setMute(ctx context.Context, args []string, mute bool) error {
	pos, err := c.parse(c.flagSet(c.cmd.name), args, 2, 2)
	if err != nil {
		return err
	}
	if err := c.client.Mute(ctx, pos[0], pos[1], mute); err != nil {
		return err
	}
	if c.json {
		return nil // the API answers 204: there is nothing to print
	}
	what := "muted %s in %s: the host refuses their lines; they still receive the room\n"
	if !mute {
		what = "unmuted %s in %s\n"
	}
	_, err = fmt.Fprintf(c.stdout, what, clean(pos[1]), clean(pos[0]))
	return err
}

func (c *cli) leave(ctx context.Context, args []string) error {
	pos, err := c.parse(c.flagSet("leave"), args, 1, 1)
	if err != nil {
		return err
	}
	if err := c.client.Leave(ctx, pos[0]); err != nil {
		return err
	}
	if c.json {
		return nil // the API answers 204: there is nothing to print
	}
	_, err = fmt.Fprintf(c.stdout, "left %s\n", clean(pos[0]))
	return err
}

func (c *cli) say(ctx context.Context, args []string) error {
	fs := c.flagSet("say")
	wait := fs.Duration("wait", 0, "wait up to this long until every member holds the line, and say how many do")
	lines := fs.Bool("lines", false, "send each line of the text as a message of its own (a paste, or a log piped in with -)")
	pos, err := c.parse(fs, args, 2, -1)
	if err != nil {
		return err
	}
	room, text := pos[0], strings.Join(pos[1:], " ")
	if len(pos) == 2 && pos[1] == "-" {
		b, err := io.ReadAll(c.stdin)
		if err != nil {
			return fmt.Errorf("read message from standard input: %w", err)
		}
		// echo and here-documents end with a newline that is not part of
		// the message.
		text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if text == "" {
		return usageErrorf("nothing to say: the message is empty")
	}
	if !*lines {
		res, err := c.client.Say(ctx, room, ctl.SayRequest{Text: text, Wait: ctl.Duration(*wait)})
		if err != nil {
			return err
		}
		return c.printSaid(res, *wait > 0)
	}
	var say []string
	for line := range strings.Lines(text) {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			say = append(say, line)
		}
	}
	// Requests of up to ctl.MaxSayLines lines and 48 KiB, within the
	// control API's 64 KiB body.
	for len(say) > 0 {
		n, size := 0, 0
		for n < len(say) && n < ctl.MaxSayLines && (n == 0 || size+len(say[n]) <= 48<<10) {
			size += len(say[n])
			n++
		}
		req := ctl.SayRequest{Lines: say[:n]}
		if n == len(say) {
			req.Wait = ctl.Duration(*wait)
		}
		res, err := c.client.Say(ctx, room, req)
		if err != nil {
			return err
		}
		if err := c.printSaid(res, req.Wait > 0); err != nil {
			return err
		}
		say = say[n:]
	}
	return nil
}

// printSaid prints where a say's lines went.
func (c *cli) printSaid(res ctl.SayResult, waited bool) error {
	if c.json {
		return c.printJSON(res)
	}
	at := fmt.Sprintf("#%d", res.Seq)
	if res.Last > res.Seq {
		at = fmt.Sprintf("#%d-#%d", res.Seq, res.Last)
	}
	var err error
	if waited {
		_, err = fmt.Fprintf(c.stdout, "%s %s seen by %d of %d\n", clean(res.Room), at, res.Seen, res.Of)
	} else {
		_, err = fmt.Fprintf(c.stdout, "%s %s\n", clean(res.Room), at)
	}
	return err
}

func (c *cli) who(ctx context.Context, args []string) error {
	pos, err := c.parse(c.flagSet("who"), args, 1, 1)
	if err != nil {
		return err
	}
	who, err := c.client.Who(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(who)
	}
	return printWho(c.stdout, who)
}

func (c *cli) status(ctx context.Context, args []string) error {
	if _, err := c.parse(c.flagSet("status"), args, 0, 0); err != nil {
		return err
	}
	st, err := c.client.Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	return printStatus(c.stdout, st)
}

func (c *cli) stats(ctx context.Context, args []string) error {
	if _, err := c.parse(c.flagSet("stats"), args, 0, 0); err != nil {
		return err
	}
	st, err := c.client.Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(statsJSON{Uptime: st.Uptime, Counters: st.Counters, Memory: st.Memory})
	}
	return printStats(c.stdout, st)
}

// statsJSON is what stats -json prints: the part of the status it shows.
type statsJSON struct {
	Uptime   ctl.Duration     `json:"uptime"`
	Counters map[string]int64 `json:"counters"`
	Memory   *ctl.Memory      `json:"memory,omitempty"`
}

// tail prints what the daemon holds of a room, then follows it. An
// interrupt (ctx cancelled) is the normal way to stop and exits 0.
func (c *cli) tail(ctx context.Context, args []string) error {
	fs := c.flagSet("tail")
	since := fs.Uint64("since", 0, "show only messages after sequence number SEQ")
	noFollow := fs.Bool("n", false, "print the held messages and exit instead of following")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	room := pos[0]
	stream, err := c.client.Events(ctx, room, *since, true)
	if err != nil {
		return err
	}
	defer stream.Close()
	last := *since
	for {
		ev, err := stream.Next()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return errors.New("meshd ended the event stream; it may be shutting down")
		}
		if err != nil {
			return err
		}
		if c.json {
			if _, err := fmt.Fprintf(c.stdout, "%s\n", stream.Raw()); err != nil {
				return err
			}
		} else if line, ok := formatEvent(ev); ok {
			if _, err := fmt.Fprintln(c.stdout, line); err != nil {
				return err
			}
		}
		last = max(last, ev.Seq)
		switch ev.Kind {
		case ctl.EventSnapshotEnd:
			if *noFollow {
				return nil
			}
		case ctl.EventOverflow:
			return fmt.Errorf("fell behind and meshd dropped events after #%d; run \"meshctl tail %s -since %d\" to catch up", last, room, last)
		}
	}
}
