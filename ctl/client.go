package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"meshd/ctl/internal/flatjson"
)

// Host is the pseudo host name in the URLs the Client requests. The socket
// path decides where a request goes; the name only makes the URLs valid
// and recognisable, e.g. in curl --unix-socket ... http://meshd.sock/v0/status.
const Host = "meshd.sock"

// ErrNotRunning is wrapped by the error a Client returns when nothing
// listens on the control socket. Test for it with errors.Is.
var ErrNotRunning = errors.New("meshd is not running")

// notRunningError says which socket was tried and how to fix it.
type notRunningError struct {
	path string
	err  error
}

func (e *notRunningError) Error() string {
	return fmt.Sprintf(`meshd is not running (nothing listening on %s); start it with "meshd" or "systemctl start meshd", or point -socket / MESHD_SOCKET at its socket`, e.path)
}

func (e *notRunningError) Unwrap() []error { return []error{ErrNotRunning, e.err} }

// APIError is a non-2xx answer from meshd.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the daemon's explanation, meant for people
}

func (e *APIError) Error() string { return e.Message }

// Client talks to meshd's control socket. The zero value uses
// ClientSocketPath. A Client is safe for concurrent use; do not change
// Socket after its first request, nor copy a Client that has made one.
// It keeps its connections open between requests for a second.
type Client struct {
	// Socket is the path of meshd's control socket; "" means
	// ClientSocketPath().
	Socket string

	pool pool
}

func (c *Client) socketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return ClientSocketPath()
}

// dialError turns the errors of a socket that is missing or dead into
// advice.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return &notRunningError{path: path, err: err}
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot connect to meshd on %s: permission denied; run as root or as a member of the socket's group (usually %q): %w", path, "meshd", err)
	}
	return fmt.Errorf("cannot connect to meshd on %s: %w", path, err)
}

// do sends a request and returns the response if it is 2xx; otherwise the
// body becomes an *APIError. The caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, in any) (*response, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = b
	}
	resp, err := c.pool.roundTrip(ctx, c.socketPath(), method, path, body)
	if err != nil {
		var nr *notRunningError
		if errors.As(err, &nr) {
			return nil, nr // already says everything; the path would only clutter it
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// maxErrorBody caps how much of an error body is read; meshd's messages
// are a sentence long.
const maxErrorBody = 64 << 10

func readAPIError(resp *response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e Error
	if err := json.Unmarshal(b, &e); err == nil && e.Error != "" {
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	// Not meshd's JSON: perhaps something else owns the socket.
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = "(no body)"
	}
	return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("meshd answered %s: %s", resp.Status, msg)}
}

// call sends in (if not nil) and decodes the JSON answer into out (if not
// nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

func roomPath(room, action string) string {
	return "/" + APIVersion + "/rooms/" + url.PathEscape(room) + "/" + action
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, "GET", "/"+APIVersion+"/status", nil, &st)
	return st, err
}

// Rooms returns every room the daemon knows: hosted, joined and announced.
func (c *Client) Rooms(ctx context.Context) ([]Room, error) {
	var rooms []Room
	err := c.call(ctx, "GET", "/"+APIVersion+"/rooms", nil, &rooms)
	return rooms, err
}

// Host starts hosting the room req names, admitting whom req says.
func (c *Client) Host(ctx context.Context, req HostRequest) (Room, error) {
	var r Room
	err := c.call(ctx, "POST", "/"+APIVersion+"/rooms/host", req, &r)
	return r, err
}

// Join joins req.Room ("name" or "name@fingerprint") as req.Nick; an empty
// nick means the daemon's default.
func (c *Client) Join(ctx context.Context, req JoinRequest) (Room, error) {
	var r Room
	err := c.call(ctx, "POST", "/"+APIVersion+"/rooms/join", req, &r)
	return r, err
}

// Invite issues an invite to room, which this daemon hosts invite-only.
func (c *Client) Invite(ctx context.Context, room string, req InviteRequest) (Invite, error) {
	var inv Invite
	err := c.call(ctx, "POST", roomPath(room, "invite"), req, &inv)
	return inv, err
}

// Mute makes the host of room, this daemon, refuse nick's lines (or, with
// mute false, accept them again).
func (c *Client) Mute(ctx context.Context, room, nick string, mute bool) error {
	action := "mute"
	if !mute {
		action = "unmute"
	}
	return c.call(ctx, "POST", roomPath(room, action), MuteRequest{Nick: nick}, nil)
}

// Leave leaves room.
func (c *Client) Leave(ctx context.Context, room string) error {
	return c.call(ctx, "POST", roomPath(room, "leave"), nil, nil)
}

// Kick removes a member from room, which this daemon must host; with
// req.Ban it may not rejoin until the host restarts.
func (c *Client) Kick(ctx context.Context, room string, req KickRequest) error {
	return c.call(ctx, "POST", roomPath(room, "kick"), req, nil)
}

// Say sends a line to room and returns the sequence number the host gave
// it, and, if req.Wait is set, how many members held it when the wait
// ended.
//
// A front end that relays a busy room says a line a request, so the
// answer is read by flatjson rather than by encoding/json's reflection;
// any answer flatjson declines still goes through encoding/json.
func (c *Client) Say(ctx context.Context, room string, req SayRequest) (SayResult, error) {
	path := roomPath(room, "say")
	resp, err := c.do(ctx, "POST", path, req)
	if err != nil {
		return SayResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSayAnswer))
	if err != nil {
		return SayResult{}, fmt.Errorf("read answer to POST %s: %w", path, err)
	}
	if r, ok := decodeSayResult(b); ok {
		return r, nil
	}
	var r SayResult
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		return SayResult{}, fmt.Errorf("decode answer to POST %s: %w", path, err)
	}
	return r, nil
}

// maxSayAnswer bounds what Say reads of an answer: meshd's is a room ref
// and three numbers.
const maxSayAnswer = 64 << 10

// decodeSayResult decodes a say's answer as encoding/json would, if
// flatjson reads it and its fields are SayResult's.
func decodeSayResult(b []byte) (r SayResult, ok bool) {
	ok = flatjson.Fields(b, func(name []byte, v flatjson.Value) bool {
		if string(name) == "room" {
			r.Room = v.String()
			return v.IsString()
		}
		n, isNum := v.Uint()
		if !isNum {
			return false
		}
		switch string(name) {
		case "seq":
			r.Seq = n
		case "last":
			r.Last = n
		case "seen", "of":
			if n > math.MaxInt {
				return false
			}
			if name[0] == 's' {
				r.Seen = int(n)
			} else {
				r.Of = int(n)
			}
		default:
			return false
		}
		return true
	})
	return r, ok
}

// Search looks for a room across the mesh (expanding TTL, static peers)
// and returns the rooms of that name found. An unanswered search is an
// *APIError with Status 404.
func (c *Client) Search(ctx context.Context, req SearchRequest) (SearchResult, error) {
	var r SearchResult
	err := c.call(ctx, "POST", "/"+APIVersion+"/search", req, &r)
	return r, err
}

// Peers returns the static peers.
func (c *Client) Peers(ctx context.Context) ([]string, error) {
	var p Peers
	err := c.call(ctx, "GET", "/"+APIVersion+"/peers", nil, &p)
	return p.Peers, err
}

// AddPeer adds a static peer, "addr:port", until the daemon restarts.
func (c *Client) AddPeer(ctx context.Context, addr string) error {
	return c.call(ctx, "POST", "/"+APIVersion+"/peers", PeerRequest{Addr: addr}, nil)
}

// RemovePeer removes a static peer.
func (c *Client) RemovePeer(ctx context.Context, addr string) error {
	return c.call(ctx, "DELETE", "/"+APIVersion+"/peers/"+url.PathEscape(addr), nil, nil)
}

// Who returns room's members.
func (c *Client) Who(ctx context.Context, room string) (Who, error) {
	var w Who
	err := c.call(ctx, "GET", roomPath(room, "who"), nil, &w)
	return w, err
}

// Events subscribes to the events of room (all rooms if room is ""). With
// initial, the stream starts with the state the daemon holds (the room's
// recent messages with Seq > since), then an EventSnapshotEnd event, then
// live events. The stream lasts until ctx ends, the daemon stops, or the
// reader falls behind (then the last event is EventOverflow).
func (c *Client) Events(ctx context.Context, room string, since uint64, initial bool) (*EventStream, error) {
	q := url.Values{}
	if room != "" {
		q.Set("room", room)
	}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	if initial {
		q.Set("initial", "1")
	}
	path := "/" + APIVersion + "/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	return &EventStream{ctx: ctx, body: resp.Body, br: bufio.NewReaderSize(resp.Body, 16<<10)}, nil
}

// maxEventBytes bounds one line of the event stream. The longest events
// are a room's announcement (room_appear) and a line of text, both far
// below this; a longer line is an error, not an unbounded allocation.
const maxEventBytes = 1 << 20

// EventStream reads the events of one subscription: one JSON object a
// line. It is not safe for concurrent use.
type EventStream struct {
	ctx  context.Context
	body io.ReadCloser
	br   *bufio.Reader
	line []byte // the last event's line, when longer than br's buffer
	raw  []byte
	room string // the last event's room, reused while events repeat it
}

// Next returns the next event. It returns io.EOF when the daemon ended the
// stream and ctx.Err() when the stream's context was cancelled.
func (s *EventStream) Next() (Event, error) {
	s.raw = nil
	for {
		line, err := s.readLine()
		if err != nil {
			// Cancelling the context breaks the connection, which shows up as
			// some I/O error; the cancellation is what the caller wants to see.
			if cerr := s.ctx.Err(); cerr != nil {
				return Event{}, cerr
			}
			if errors.Is(err, io.EOF) {
				return Event{}, io.EOF
			}
			return Event{}, fmt.Errorf("read event stream: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		ev, ok := s.decodeFlat(line)
		if !ok {
			ev = Event{}
			if err := json.Unmarshal(line, &ev); err != nil {
				return Event{}, fmt.Errorf("decode event %s: %w", line, err)
			}
		}
		s.raw = line
		return ev, nil
	}
}

// readLine returns the stream's next line, valid until the next call.
func (s *EventStream) readLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF // a stream ends after a whole line
		}
		return line, err
	}
	s.line = append(s.line[:0], line...)
	for {
		line, err = s.br.ReadSlice('\n')
		if len(s.line)+len(line) > maxEventBytes {
			return nil, fmt.Errorf("event longer than %d bytes", maxEventBytes)
		}
		s.line = append(s.line, line...)
		switch {
		case err == nil:
			return s.line, nil
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
}

// eventKinds lets the decoder return a kind without allocating it.
var eventKinds = []string{EventMessage, EventJoin, EventPart, EventReceipt, EventGap,
	EventRoomState, EventRoomAppear, EventSnapshotEnd, EventOverflow, EventMissed}

// decodeFlat decodes an event as encoding/json would, for the events
// flatjson reads (all but room_appear, whose info is an object); ok is
// false for the others.
func (s *EventStream) decodeFlat(line []byte) (ev Event, ok bool) {
	ok = flatjson.Fields(line, func(name []byte, v flatjson.Value) bool {
		if n, isNum := v.Uint(); isNum {
			switch string(name) {
			case "seq":
				ev.Seq = n
			case "through":
				ev.Through = n
			case "seen", "of":
				if n > math.MaxInt {
					return false
				}
				if name[0] == 's' {
					ev.Seen = int(n)
				} else {
					ev.Of = int(n)
				}
			default:
				return false
			}
			return true
		}
		switch string(name) {
		case "kind":
			ev.Kind = ""
			for _, k := range eventKinds {
				if v.Equal(k) {
					ev.Kind = k
				}
			}
			if ev.Kind == "" {
				ev.Kind = v.String()
			}
		case "room":
			if !v.Equal(s.room) {
				s.room = v.String()
			}
			ev.Room = s.room
		case "nick":
			ev.Nick = v.String()
		case "fingerprint":
			ev.Fingerprint = v.String()
		case "text":
			ev.Text = v.String()
		case "state":
			ev.State = v.String()
		default:
			return false
		}
		return true
	})
	return ev, ok
}

// Raw returns the JSON text of the event Next last returned, exactly as
// the daemon sent it (including fields this package does not know),
// without the line's end. It is valid until the next call to Next.
func (s *EventStream) Raw() json.RawMessage { return s.raw }

// Close ends the subscription.
func (s *EventStream) Close() error { return s.body.Close() }
