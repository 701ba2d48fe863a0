package ctlserver

import (
	"bytes"
	"encoding/json"
	"testing"

	"meshd/ctl"
)

// jsonLine is what json.Encoder writes for ev: what appendEvent must match.
func jsonLine(t testing.TB, ev *ctl.Event) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(ev); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var trickyStrings = []string{
	"", "plain", `"quoted" and \back\slashed`, "<script>&amp;</script>",
	"\x00\x01\x07\b\f\n\r\t\x1f\x7f", "héllo wörld ✓ 🙂", "\u2028\u2029",
	"bad \xff utf-8 \xc3", "\xe2\x80", "cut rune at end \xf0\x9f\x99",
}

func TestAppendEventMatchesJSON(t *testing.T) {
	evs := []ctl.Event{
		{Kind: ctl.EventMessage, Room: "general@abcd", Seq: 42, Nick: "bob", Fingerprint: "ab12", Text: "hi"},
		{Kind: ctl.EventGap, Room: "general@abcd", Seq: 1, Through: 1 << 63},
		{Kind: ctl.EventMissed, Room: "general@abcd", Seq: 2, Through: 250},
		{Kind: ctl.EventReceipt, Room: "r", Seq: 7, Seen: 3, Of: -4},
		{Kind: ctl.EventRoomState, Room: "r", State: "connected"},
		{Kind: ctl.EventSnapshotEnd},
		{},
		{Kind: ctl.EventRoomAppear, Room: "r", Info: &ctl.Room{Name: "r<&>"}},
	}
	for _, s := range trickyStrings {
		evs = append(evs, ctl.Event{Kind: s, Room: s, Nick: s, Fingerprint: s, Text: s, State: s})
	}
	for _, ev := range evs {
		got, err := appendEvent([]byte("prefix"), &ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte("prefix"), jsonLine(t, &ev)...); !bytes.Equal(got, want) {
			t.Errorf("appendEvent(%+v)\n got %q\nwant %q", ev, got, want)
		}
	}
}

func FuzzAppendEvent(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, s, uint64(len(s)), len(s))
	}
	f.Fuzz(func(t *testing.T, text, nick string, seq uint64, seen int) {
		ev := ctl.Event{Kind: ctl.EventMessage, Room: nick + "@" + text, Seq: seq, Through: seq / 2, Seen: seen, Of: -seen, Nick: nick, Text: text}
		got, err := appendEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := jsonLine(t, &ev); !bytes.Equal(got, want) {
			t.Fatalf("appendEvent(%+v)\n got %q\nwant %q", ev, got, want)
		}
	})
}

// BenchmarkEventLine is one line of the event stream, as a member writes it
// for each line of its rooms: encoding/json against appendEvent.
func BenchmarkEventLine(b *testing.B) {
	ev := ctl.Event{Kind: ctl.EventMessage, Room: "general@8f2a6c1d", Seq: 123456, Nick: "alice", Fingerprint: "8f2a6c1d",
		Text: string(bytes.Repeat([]byte("a line of chat, "), 12))}
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := enc.Encode(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendEvent", func(b *testing.B) {
		var line []byte
		b.ReportAllocs()
		for b.Loop() {
			line, _ = appendEvent(line[:0], &ev)
		}
	})
}
