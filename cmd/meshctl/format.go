package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"meshd/ctl"
)

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clean makes text from the network safe to print: nicks and messages
// come from other people, and a control or bidi character in them could
// rewrite the terminal or disguise a line. Such runes are shown escaped.
func clean(s string) string {
	unsafe := func(r rune) bool {
		return r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r))
	}
	if !strings.ContainsFunc(s, unsafe) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafe(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func printRooms(w io.Writer, rooms []ctl.Room, now time.Time) error {
	if len(rooms) == 0 {
		_, err := fmt.Fprintln(w, `no rooms known yet; host one with "meshctl host NAME"`)
		return err
	}
	rooms = slices.SortedFunc(slices.Values(rooms), func(a, b ctl.Room) int { return strings.Compare(a.Ref, b.Ref) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOM\tACCESS\tHERE\tMEMBERS\tADDRESSES\tEXPIRES")
	for _, r := range rooms {
		var here []string
		if r.KeyChanged {
			// Announced under a pinned name by another key: possibly an
			// impostor, and never joined by the bare name.
			here = append(here, "KEY CHANGED")
		}
		if r.Hosted {
			here = append(here, "host")
		}
		if r.Joined {
			here = append(here, "joined")
			if r.State != "" && r.State != "connected" {
				here = append(here, "("+r.State+")")
			} else if r.Path == "tcp" {
				// Multicast does not reach this daemon; the host's
				// session carries the room.
				here = append(here, "(via tcp)")
			}
		}
		access := ctl.AccessOpen
		if r.Access != "" {
			access = clean(r.Access)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			clean(r.Ref), access, orDash(strings.Join(here, " ")), orDash(count(r.Members)),
			orDash(clean(strings.Join(r.Addrs, ","))), expiry(r.Expires, now))
	}
	return tw.Flush()
}

func printWho(w io.Writer, who ctl.Who) error {
	fmt.Fprintf(w, "%s: %d %s\n", clean(who.Room.Ref), len(who.Members), plural(len(who.Members), "member", "members"))
	if len(who.Members) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NICK\tFINGERPRINT\tPATH\tROLE\tHOLDS")
	for _, m := range who.Members {
		role := "member"
		if m.Host {
			role = "host"
		}
		if m.Muted {
			role += " (muted)"
		}
		// Only the host knows how far each member has got.
		holds := "-"
		if m.Acked > 0 {
			holds = fmt.Sprintf("#%d", m.Acked)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(m.Nick), clean(m.Fingerprint), orDash(m.Path), role, holds)
	}
	return tw.Flush()
}

func printStatus(w io.Writer, st ctl.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "meshd %s, up %s (boot %d)\n", st.Version, time.Duration(st.Uptime).Round(time.Second), st.Boot)
	for _, kv := range [][2]string{
		{"fingerprint", st.Fingerprint},
		{"public key", st.PublicKey},
		{"nick", st.Nick},
		{"socket", st.Socket},
		{"state dir", st.StateDir},
		{"discovery", st.Discovery},
		{"rooms", fmt.Sprintf("%d hosted, %d joined, %d known", st.Hosted, st.Joined, st.Known)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], orDash(kv[1]))
	}
	for _, r := range st.Rooms {
		what := "host"
		if r.Joined {
			what = fmt.Sprintf("joined as %s via %s", clean(r.Nick), orDash(r.Path))
			if r.State != "" && r.State != "connected" {
				what += " (" + clean(r.State) + ")"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s, at #%d\n", clean(r.Ref), what, r.LastSeq)
	}
	if err := tw.Flush(); err != nil || len(st.Counters) == 0 {
		return err
	}
	// A separate table, so long counter names do not widen the one above.
	fmt.Fprintln(w, "counters:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(st.Counters)) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, st.Counters[k])
	}
	return tw.Flush()
}

// statGroups sorts counters by what they count; the first group whose
// prefix matches wins, and counters no group claims are listed last.
var statGroups = []struct {
	title    string
	prefixes []string
}{
	{"Room announcements (discovery)", []string{"announce_", "discovery_"}},
	{"Searches, answers and relays", []string{"search", "quer", "answer", "relay"}},
	{"Room data", []string{"data_"}},
	{"Loss repair (NACKs, repairs, FEC blocks)", []string{"nack", "repairs_", "blocks_"}},
	{"Sessions and paths", []string{"sessions_", "stream_"}},
	{"Access and moderation (joins, lines, keys)", []string{"access_", "joins_", "says_", "rekeys"}},
	{"Packets", []string{"packets_", "send_"}},
	{"Control API", []string{"ctl_"}},
}

// printStats shows the counters for people: grouped, each with a few
// words on what it counts.
func printStats(w io.Writer, st ctl.Status) error {
	fmt.Fprintf(w, "meshd %s, up %s\n", st.Version, time.Duration(st.Uptime).Round(time.Second))
	if m := st.Memory; m != nil {
		fmt.Fprintf(w, "\nMemory\n  heap %s, from the OS %s, %d goroutines\n", bytesIEC(m.HeapBytes), bytesIEC(m.SysBytes), m.Goroutines)
	}
	groups := make([][]string, len(statGroups)+1)
	for _, name := range slices.Sorted(maps.Keys(st.Counters)) {
		groups[statGroup(name)] = append(groups[statGroup(name)], name)
	}
	for i, names := range groups {
		if len(names) == 0 {
			continue
		}
		title := "Other"
		if i < len(statGroups) {
			title = statGroups[i].title
		}
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, name := range names {
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", clean(name), st.Counters[name], ctl.CounterHelp(name))
		}
		tw.Flush()
		// A counter this meshctl has no words for leaves padding behind.
		fmt.Fprintf(w, "\n%s\n", title)
		for line := range strings.Lines(b.String()) {
			if _, err := fmt.Fprintln(w, strings.TrimRight(line, " \n")); err != nil {
				return err
			}
		}
	}
	return nil
}

// statGroup returns the index in statGroups of name's group, or
// len(statGroups) for Other.
func statGroup(name string) int {
	for i, sg := range statGroups {
		for _, p := range sg.prefixes {
			if strings.HasPrefix(name, p) {
				return i
			}
		}
	}
	return len(statGroups)
}

// bytesIEC prints a byte count the way people read it: 12.3 MiB.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatEvent renders one event for tail; ok is false for events that
// only structure the stream.
func formatEvent(ev ctl.Event) (line string, ok bool) {
	switch ev.Kind {
	case ctl.EventMessage:
		return fmt.Sprintf("#%d <%s> %s", ev.Seq, clean(ev.Nick), clean(ev.Text)), true
	case ctl.EventJoin:
		return fmt.Sprintf("#%d * %s joined", ev.Seq, clean(ev.Nick)), true
	case ctl.EventPart:
		return fmt.Sprintf("#%d * %s left", ev.Seq, clean(ev.Nick)), true
	case ctl.EventGap:
		n := ev.Through - ev.Seq + 1
		return fmt.Sprintf("#%d-%d * %d lost: the host no longer held them", ev.Seq, ev.Through, n), true
	case ctl.EventMissed:
		n := ev.Through - ev.Seq + 1
		return fmt.Sprintf("#%d-%d * %d not shown: meshd keeps only a room's newest lines for tail", ev.Seq, ev.Through, n), true
	case ctl.EventReceipt:
		return fmt.Sprintf("#%d seen by %d of %d", ev.Seq, ev.Seen, ev.Of), true
	case ctl.EventRoomState:
		return fmt.Sprintf("* %s is %s", clean(ev.Room), clean(ev.State)), true
	case ctl.EventRoomAppear:
		return fmt.Sprintf("* room %s appeared", clean(ev.Room)), true
	case ctl.EventRoomExpire:
		return fmt.Sprintf("* room %s expired", clean(ev.Room)), true
	case ctl.EventSnapshotEnd, ctl.EventOverflow:
		return "", false
	}
	// A kind added to the API after this meshctl was built.
	return fmt.Sprintf("* %s event in %s", clean(ev.Kind), clean(ev.Room)), true
}

func expiry(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "expired"
	}
	return "in " + d.String()
}

func count(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
