package ctl

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeEvent: an event line the stream's own decoder takes decodes
// as encoding/json decodes it.
func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"message","room":"general@ab12","seq":42,"nick":"m1","fingerprint":"ab12cd","text":"1733 \u003cxx\u003e"}`,
		`{"kind":"receipt","room":"general@ab12","seq":7,"seen":3,"of":4}`,
		`{"kind":"gap","room":"g","seq":7,"through":9}`,
		`{"kind":"missed","room":"g","seq":2,"through":250}`,
		`{"kind":"room_state","room":"g","state":"connected"}`,
		`{"kind":"room_appear","room":"g","info":{"name":"g"}}`,
		`{"kind":"new_kind","seen":9223372036854775808}`,
		`{"Kind":"message"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var s EventStream
		got, ok := s.decodeFlat(line)
		if !ok {
			return
		}
		var want Event
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("decodeFlat took %q, encoding/json: %v", line, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decodeFlat %+v, encoding/json %+v", line, got, want)
		}
	})
}

// FuzzDecodeSayResult: a say's answer decodeSayResult takes decodes as
// encoding/json decodes it.
func FuzzDecodeSayResult(f *testing.F) {
	for _, seed := range []string{
		`{"room":"general@ab12","seq":42}` + "\n", `{"room":"g","seq":7,"seen":3,"of":4}`,
		`{"room":"g\u003c","seq":1,"extra":2}`, `{"Room":"g"}`, `{"seen":9223372036854775808}`, `{"room":5}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeSayResult(b)
		if !ok {
			return
		}
		var want SayResult
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("decodeSayResult took %q, encoding/json: %v", b, err)
		}
		if got != want {
			t.Fatalf("%q: decodeSayResult %+v, encoding/json %+v", b, got, want)
		}
	})
}
