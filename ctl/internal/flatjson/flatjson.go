// Package flatjson reads the control API's hot JSON objects, a say
// request and an event, without encoding/json's reflection: at full rate
// a room's host decodes a say and every front end an event per line, and
// encoding/json scans each twice and allocates on the way (about 8 µs an
// event in the benchmark's profile). It reads only flat objects whose
// values are strings and non-negative integers, exactly as encoding/json
// would; anything else it declines, and the caller hands the bytes to
// encoding/json, which also explains what is wrong with them.
package flatjson

import (
	"unicode/utf16"
	"unicode/utf8"
)

// Value is an object member's value: a string, or a number (digits only).
type Value struct {
	str   []byte // the string's JSON text without the quotes
	plain bool   // str has no escapes and is valid UTF-8
	num   uint64
	isNum bool
}

// IsString reports whether v is a string.
func (v Value) IsString() bool { return !v.isNum }

// Uint returns a number's value; ok is false for a string.
func (v Value) Uint() (n uint64, ok bool) { return v.num, v.isNum }

// Equal reports whether v is the string s, without allocating.
func (v Value) Equal(s string) bool {
	if v.isNum {
		return false
	}
	if v.plain {
		return string(v.str) == s
	}
	return v.String() == s
}

// String returns a string's value as encoding/json decodes it: escapes
// resolved, bad UTF-8 and lone surrogates replaced by U+FFFD.
func (v Value) String() string {
	if v.isNum {
		return ""
	}
	if v.plain {
		return string(v.str)
	}
	return string(unquote(v.str))
}

// Fields calls f for each member of the JSON object in b, in order; f
// returns false to give up. Fields returns false, having called f for
// none or some of the members, when f gave up or b is not such an object:
// a member whose value is not a string or a non-negative integer that
// fits in a uint64, a name with escapes, or anything but white space
// after the object. A caller that gets false decodes b with
// encoding/json instead.
func Fields(b []byte, f func(name []byte, v Value) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		name, plain, next, ok := scanString(b, i)
		if !ok || !plain {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		var v Value
		switch c := b[i]; {
		case c == '"':
			v.str, v.plain, next, ok = scanString(b, i)
		case c >= '0' && c <= '9':
			v.isNum = true
			v.num, next, ok = scanUint(b, i)
		default:
			return false // null, true, false, negative, object, array
		}
		if !ok || !f(name, v) {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the string whose opening quote is at b[i]. It returns
// its text between the quotes, whether that needs no unquoting, and the
// index after the closing quote; ok is false for a string JSON does not
// allow (unescaped control characters, bad escapes) or no closing quote.
func scanString(b []byte, i int) (s []byte, plain bool, next int, ok bool) {
	start := i + 1
	plain = true
	for j := start; j < len(b); {
		c := b[j]
		switch {
		case c == '"':
			return b[start:j], plain, j + 1, true
		case c < 0x20:
			return nil, false, 0, false
		case c == '\\':
			plain = false
			if j+1 >= len(b) {
				return nil, false, 0, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) {
					return nil, false, 0, false
				}
				for _, h := range b[j+2 : j+6] {
					if unhex(h) < 0 {
						return nil, false, 0, false
					}
				}
				j += 6
			default:
				return nil, false, 0, false
			}
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			j += size
		}
	}
	return nil, false, 0, false
}

// scanUint reads the digits at b[i:]: a JSON integer without sign,
// fraction or exponent, that fits in a uint64.
func scanUint(b []byte, i int) (n uint64, next int, ok bool) {
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		d := uint64(b[j] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, 0, false
		}
		n = n*10 + d
		j++
	}
	if j-i > 1 && b[i] == '0' {
		return 0, 0, false // leading zeros are not JSON
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	return n, j, true
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// u4 decodes the four hex digits after a \u at s[0:2]; -1 if s does not
// start with one.
func u4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		h := unhex(c)
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

// unquote resolves the escapes of a string scanString accepted, as
// encoding/json does.
func unquote(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch s[i+1] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := u4(s[i:])
				i += 6
				if utf16.IsSurrogate(r) {
					if r2 := u4(s[i:]); r2 >= 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, s[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r) // RuneError for a bad byte, as encoding/json
			i += size
		}
	}
	return out
}
