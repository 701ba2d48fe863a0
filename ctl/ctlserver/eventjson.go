package ctlserver

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"meshd/ctl"
)

// appendEvent appends ev to b as one line of the event stream: the bytes
// json.Encoder would write, newline included (TestAppendEventMatchesJSON,
// FuzzAppendEvent). A member of a room at 100 lines a second encodes an
// event per line; encoding/json spent reflection and an allocation or two
// on each. An event with Info (room_appear, a few a minute) goes through
// encoding/json.
func appendEvent(b []byte, ev *ctl.Event) ([]byte, error) {
	if ev.Info != nil {
		j, err := json.Marshal(ev)
		if err != nil {
			return b, err
		}
		return append(append(b, j...), '\n'), nil
	}
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, ev.Kind)
	b = appendStringField(b, `,"room":`, ev.Room)
	if ev.Seq != 0 {
		b = strconv.AppendUint(append(b, `,"seq":`...), ev.Seq, 10)
	}
	if ev.Through != 0 {
		b = strconv.AppendUint(append(b, `,"through":`...), ev.Through, 10)
	}
	if ev.Seen != 0 {
		b = strconv.AppendInt(append(b, `,"seen":`...), int64(ev.Seen), 10)
	}
	if ev.Of != 0 {
		b = strconv.AppendInt(append(b, `,"of":`...), int64(ev.Of), 10)
	}
	b = appendStringField(b, `,"nick":`, ev.Nick)
	b = appendStringField(b, `,"fingerprint":`, ev.Fingerprint)
	b = appendStringField(b, `,"text":`, ev.Text)
	b = appendStringField(b, `,"state":`, ev.State)
	return append(b, '}', '\n'), nil
}

// appendStringField appends an omitempty string field.
func appendStringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, name...), s)
}

const hexDigits = "0123456789abcdef"

// plain marks the bytes appendJSONString copies as they are: ASCII but
// control characters, the quote, the backslash and the HTML characters.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as encoding/json does with HTML escaping on
// (json.Encoder's default): <, > and & escaped, invalid UTF-8 replaced by
// U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most of a line is plain: skip it with a table, a byte a step.
		for i < len(s) && plain[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
