package ctlserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"meshd/ctl"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     ctl.JoinRequest
		wantCode int    // 0 for success
		wantMsg  string // substring
	}{
		{name: "ok", body: `{"room":"general@abcd1234","nick":"al"}`, want: ctl.JoinRequest{Room: "general@abcd1234", Nick: "al"}},
		{name: "trailing whitespace", body: "{\"room\":\"g\"}\n\t ", want: ctl.JoinRequest{Room: "g"}},
		{name: "empty", body: "", wantCode: 400, wantMsg: "request body is empty"},
		{name: "null", body: "null", want: ctl.JoinRequest{}},
		{name: "unknown field", body: `{"room":"g","nik":"al"}`, wantCode: 400, wantMsg: `request body has unknown field "nik"`},
		{name: "second value", body: `{"room":"g"} {}`, wantCode: 400, wantMsg: "more than one JSON value"},
		{name: "garbage after", body: `{"room":"g"}]`, wantCode: 400, wantMsg: "not valid JSON"},
		{name: "syntax", body: `{"room" "g"}`, wantCode: 400, wantMsg: "not valid JSON at byte"},
		{name: "truncated", body: `{"room":"g`, wantCode: 400, wantMsg: "ends in the middle of a JSON value"},
		{name: "wrong type", body: `{"room":["g"]}`, wantCode: 400, wantMsg: `field "room" must be a JSON string, not a JSON array`},
		{name: "not object", body: `"general"`, wantCode: 400, wantMsg: "must be a JSON object, not a JSON string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ctl.JoinRequest
			err := decodeJSON(strings.NewReader(tt.body), &got)
			if tt.wantCode == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("decodeJSON(%q) = %+v, %v; want %+v", tt.body, got, err, tt.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.wantCode || !strings.Contains(e.Error(), tt.wantMsg) {
				t.Fatalf("decodeJSON(%q) error = %v, want %d containing %q", tt.body, err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// FuzzDecodeRequest checks that no body makes request decoding panic or
// fail without a 4xx explanation, and that whatever it accepts encodes to
// JSON that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"name":"general"}`,
		`{"room":"general@abcd1234","nick":"alice"}`,
		`{"text":"hello \u00e9\n"}`,
		`{"text":"a"}{"text":"b"}`,
		`{"text":1e999}`,
		`{"name":"crew","access":"invite","allow":["abcdefgh"]}`,
		`{"room":"crew@abcd1234","invite":"k5rkd6e4rsb3p2mw2cwzapkeoq","passphrase":"p"}`,
		`{"uses":3,"expires":"2h"}`,
		`{"uses":-1,"expires":"forever"}`,
		`{"nick":"mallory"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{new(ctl.HostRequest), new(ctl.JoinRequest), new(ctl.SayRequest), new(ctl.InviteRequest), new(ctl.MuteRequest)} {
			err := decodeJSON(bytes.NewReader(body), v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Code != http.StatusBadRequest || e.Error() == "" {
					t.Fatalf("decodeJSON(%q) into %T = %v, want a 400 *Error with a message", body, v, err)
				}
				continue
			}
			again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", v, err)
			}
			if err := decodeJSON(bytes.NewReader(b), again); err != nil {
				t.Fatalf("decodeJSON(%s), re-encoded from %q: %v", b, body, err)
			}
			// Compared as JSON, since omitempty rightly makes an empty
			// list and no list the same request.
			b2, err := json.Marshal(again)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", again, err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("round trip of %q into %T: %s, then %s", body, v, b, b2)
			}
		}
	})
}
