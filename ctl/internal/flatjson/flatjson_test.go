package flatjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzFields: whatever Fields accepts, encoding/json accepts too and
// decodes to the same members and values.
func FuzzFields(f *testing.F) {
	for _, seed := range []string{
		`{"text":"hi"}`,
		`{"kind":"message","room":"general@ab12","seq":42,"nick":"m1","fingerprint":"ab12cd","text":"1733 xxx"}` + "\n",
		` { "text" : "a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x\udc00" , "wait" : "1s" } `,
		`{"text":"\xff\xfe bad utf-8 \u2028"}`,
		`{}`, `{"seq":18446744073709551615}`, `{"seq":18446744073709551616}`, `{"seq":01}`, `{"seq":1.5}`,
		`{"a":null}`, `{"a":"x"}{}`, `{"a":"x",}`, `{"a\u0041":"x"}`, `{"a":"x","a":"y"}`, `{"info":{"name":"x"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		type member struct {
			name string
			v    Value
		}
		var got []member
		if !Fields(b, func(name []byte, v Value) bool {
			got = append(got, member{string(name), v})
			return true
		}) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var want map[string]any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("Fields accepted %q, encoding/json: %v", b, err)
		}
		if dec.More() {
			t.Fatalf("Fields accepted %q, which holds more than one value", b)
		}
		last := make(map[string]Value)
		for _, m := range got {
			last[m.name] = m.v
		}
		if len(last) != len(want) {
			t.Fatalf("%q: Fields found members %v, encoding/json %v", b, got, want)
		}
		for name, v := range last {
			switch w := want[name].(type) {
			case string:
				if !v.IsString() || v.String() != w || !v.Equal(w) {
					t.Fatalf("%q: %s = %q, encoding/json %q", b, name, v.String(), w)
				}
			case json.Number:
				n, ok := v.Uint()
				if !ok || w.String() != uintString(n) {
					t.Fatalf("%q: %s = %d (number %v), encoding/json %s", b, name, n, ok, w)
				}
			default:
				t.Fatalf("%q: %s is %T to encoding/json, Fields accepted it", b, name, w)
			}
		}
	})
}

func uintString(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestFieldsDeclines: what Fields leaves to encoding/json.
func TestFieldsDeclines(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `"x"`, `{"a":null}`, `{"a":true}`, `{"a":-1}`, `{"a":1.5}`, `{"a":1e3}`, `{"a":01}`,
		`{"a":18446744073709551616}`, `{"a":{"b":1}}`, `{"a":["b"]}`, `{"a\u0041":"x"}`, `{"a":"x"} {}`,
		`{"a":"x",}`, `{"a":"x"`, `{"a":"x\q"}`, "{\"a\":\"x\ty\"}", `{"a":"\u12"}`, `{a:"x"}`,
	} {
		if Fields([]byte(in), func([]byte, Value) bool { return true }) {
			t.Errorf("Fields accepted %q", in)
		}
	}
}

func BenchmarkFieldsEvent(b *testing.B) {
	line := []byte(`{"kind":"message","room":"general@ab12cd34","seq":123456,"nick":"m1","fingerprint":"ab12cd34ef56","text":"1733400000000000000 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	b.ReportAllocs()
	for b.Loop() {
		Fields(line, func([]byte, Value) bool { return true })
	}
}
