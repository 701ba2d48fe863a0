package ctlserver

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"meshd/ctl"
)

// FuzzSayJSON: a say body sayFields reads decodes as decodeJSON decodes
// it, and appendSayResult writes what json.Encoder writes.
func FuzzSayJSON(f *testing.F) {
	for _, seed := range []string{
		`{"text":"hi"}`, `{"text":"1733 xx","wait":"1.5s"}`, `{"text":"a\u003cb\ud83d\ude00"}`,
		`{"wait":"zz","text":"x"}`, `{"Text":"x"}`, `{"text":"x","extra":1}`, `{"text":5}`, `{"text":"x"} {}`, ``,
	} {
		f.Add([]byte(seed), "general@ab12", uint64(7), 3, 4)
	}
	f.Fuzz(func(t *testing.T, body []byte, room string, seq uint64, seen, of int) {
		var got ctl.SayRequest
		if sayFields(body, &got) {
			var want ctl.SayRequest
			if err := decodeJSON(bytes.NewReader(body), &want); err != nil {
				t.Fatalf("sayFields took %q, decodeJSON: %v", body, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: sayFields %+v, decodeJSON %+v", body, got, want)
			}
		}
		res := ctl.SayResult{Room: room, Seq: seq, Seen: seen, Of: of}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(res); err != nil {
			t.Fatal(err)
		}
		if got := appendSayResult(nil, &res); !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("appendSayResult(%+v) = %q, json.Encoder %q", res, got, buf.Bytes())
		}
	})
}

func TestSayJSON(t *testing.T) {
	for _, s := range trickyStrings {
		res := ctl.SayResult{Room: s, Seq: 1 << 63, Of: -1}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(res); err != nil {
			t.Fatal(err)
		}
		if got := appendSayResult(nil, &res); !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("appendSayResult(%+v) = %q, json.Encoder %q", res, got, buf.Bytes())
		}
	}
	var req ctl.SayRequest
	if !sayFields([]byte(`{"text":"hi \u003c","wait":"2s"}`), &req) || req.Text != "hi <" || req.Wait != ctl.Duration(2e9) {
		t.Errorf("sayFields of the usual say = %+v", req)
	}
}
