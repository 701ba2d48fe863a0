package ctlserver

import (
	"bytes"
	"io"
	"strconv"

	"meshd/ctl"
	"meshd/ctl/ctlserver/httpd"
	"meshd/ctl/internal/flatjson"
)

// A host's front end says a line a request; at full rate encoding/json's
// reflection over the say and its answer was a sixth of what a line cost
// the host (the benchmark's profile). The usual say, {"text": ...} with
// perhaps a wait, is read by flatjson and its answer appended by hand;
// anything else takes decodeJSON's path, whose errors say what is wrong.

// decodeSay reads a say request's body.
func decodeSay(r *httpd.Request) (ctl.SayRequest, error) {
	var req ctl.SayRequest
	if r.ContentLength <= 0 || r.ContentLength > MaxBodyBytes {
		return req, decodeBody(r, &req)
	}
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		return req, BadRequest(err)
	}
	if sayFields(body, &req) {
		return req, nil
	}
	req = ctl.SayRequest{}
	return req, decodeJSON(bytes.NewReader(body), &req)
}

// sayFields decodes body into req as decodeJSON would, if flatjson can
// read it and its fields are req's.
func sayFields(body []byte, req *ctl.SayRequest) bool {
	return flatjson.Fields(body, func(name []byte, v flatjson.Value) bool {
		if !v.IsString() {
			return false
		}
		switch string(name) {
		case "text":
			req.Text = v.String()
		case "wait":
			return req.Wait.UnmarshalText([]byte(v.String())) == nil
		default:
			return false
		}
		return true
	})
}

// appendSayResult appends res as json.Encoder writes it, newline
// included (FuzzSayJSON).
func appendSayResult(b []byte, res *ctl.SayResult) []byte {
	b = appendJSONString(append(b, `{"room":`...), res.Room)
	b = strconv.AppendUint(append(b, `,"seq":`...), res.Seq, 10)
	if res.Last != 0 {
		b = strconv.AppendUint(append(b, `,"last":`...), res.Last, 10)
	}
	if res.Seen != 0 {
		b = strconv.AppendInt(append(b, `,"seen":`...), int64(res.Seen), 10)
	}
	if res.Of != 0 {
		b = strconv.AppendInt(append(b, `,"of":`...), int64(res.Of), 10)
	}
	return append(b, '}', '\n')
}
