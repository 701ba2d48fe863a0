package ctlserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver"
	"meshd/ctl/ctltest"
	"meshd/internal/leaktest"
)

// rawClient sends hand-made requests to the socket, for what ctl.Client
// never sends.
func rawClient(t *testing.T, socket string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type rawResponse struct {
	status int
	header http.Header
	body   string
}

func doRaw(t *testing.T, hc *http.Client, method, path, body string, header http.Header) rawResponse {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+ctl.Host+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return rawResponse{resp.StatusCode, resp.Header, string(b)}
}

// errorMessage decodes a ctl.Error body, failing if the body is not one.
func errorMessage(t *testing.T, r rawResponse) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e ctl.Error
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not a ctl.Error (%v)", r.body, err)
	}
	return e.Error
}

func TestRoundTrip(t *testing.T) {
	b := ctltest.NewBackend()
	b.AddRoom(ctl.Room{Name: "lobby", Fingerprint: "feedbeef", Members: 2})
	srv := ctltest.Start(t, b)
	c := srv.Client
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Fingerprint != ctltest.Fingerprint || st.Uptime != ctl.Duration(90*time.Second) || st.Counters["packets_in"] != 10 {
		t.Errorf("Status = %+v, want the fake's status", st)
	}

	hosted, err := c.Host(ctx, ctl.HostRequest{Name: "general"})
	if err != nil {
		t.Fatalf("Host: %v", err)
	}
	if hosted.Ref != "general@"+ctltest.Fingerprint || !hosted.Hosted || !hosted.Joined {
		t.Errorf("Host = %+v, want hosted and joined general@%s", hosted, ctltest.Fingerprint)
	}

	joined, err := c.Join(ctx, ctl.JoinRequest{Room: "lobby", Nick: "alice"})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if joined.Ref != "lobby@feedbeef" || joined.Nick != "alice" || !joined.Joined {
		t.Errorf("Join = %+v, want lobby@feedbeef joined as alice", joined)
	}

	rooms, err := c.Rooms(ctx)
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	if len(rooms) != 2 || rooms[0].Ref != "lobby@feedbeef" || rooms[1].Ref != hosted.Ref {
		t.Errorf("Rooms = %+v, want lobby@feedbeef and %s", rooms, hosted.Ref)
	}

	res, err := c.Say(ctx, "lobby@feedbeef", ctl.SayRequest{Text: "hello"})
	if err != nil {
		t.Fatalf("Say: %v", err)
	}
	// The join took seq 1.
	if want := (ctl.SayResult{Room: "lobby@feedbeef", Seq: 2}); res != want {
		t.Errorf("Say = %+v, want %+v", res, want)
	}

	who, err := c.Who(ctx, "general")
	if err != nil {
		t.Fatalf("Who: %v", err)
	}
	wantMembers := []ctl.Member{{Nick: ctltest.Nick, Fingerprint: ctltest.Fingerprint, Host: true, Path: "multicast"}}
	if who.Room.Ref != hosted.Ref || !reflect.DeepEqual(who.Members, wantMembers) {
		t.Errorf("Who = %+v, want room %s with members %+v", who, hosted.Ref, wantMembers)
	}

	if err := c.Leave(ctx, "lobby@feedbeef"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if _, err := c.Say(ctx, "lobby@feedbeef", ctl.SayRequest{Text: "still here?"}); err == nil {
		t.Error("Say after Leave succeeded, want an error")
	}
}

// TestRoomRefEscaping checks that a room name that is not a plain path
// segment reaches the backend intact.
func TestRoomRefEscaping(t *testing.T) {
	srv := ctltest.Start(t, ctltest.NewBackend())
	ctx := context.Background()
	const name = "a b/c?d#e%f"
	if _, err := srv.Client.Host(ctx, ctl.HostRequest{Name: name}); err != nil {
		t.Fatalf("Host: %v", err)
	}
	res, err := srv.Client.Say(ctx, name, ctl.SayRequest{Text: "hi"})
	if err != nil {
		t.Fatalf("Say(%q): %v", name, err)
	}
	if want := name + "@" + ctltest.Fingerprint; res.Room != want {
		t.Errorf("Say room = %q, want %q", res.Room, want)
	}
}

func TestErrorMapping(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	c := srv.Client
	ctx := context.Background()
	if _, err := c.Host(ctx, ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}
	b.AddRoom(ctl.Room{Name: "twin", Fingerprint: "11111111"})
	b.AddRoom(ctl.Room{Name: "twin", Fingerprint: "22222222"})
	b.AddRoom(ctl.Room{Name: "quiet", Fingerprint: "33333333"})
	b.SetError("Who", ctlserver.Unavailable(errors.New("no link to the host of general yet: try again in a few seconds")))
	b.SetError("Leave", errors.New("disk on fire"))

	tests := []struct {
		name       string
		call       func() error
		wantStatus int
		wantMsg    string
	}{
		{"unknown room", func() error { _, err := c.Join(ctx, ctl.JoinRequest{Room: "nope"}); return err },
			404, `room "nope" is not known: run "meshctl rooms" to see the rooms on this network`},
		{"ambiguous room", func() error { _, err := c.Join(ctx, ctl.JoinRequest{Room: "twin"}); return err },
			400, `room name "twin" is ambiguous: use one of twin@11111111, twin@22222222`},
		{"host twice", func() error { _, err := c.Host(ctx, ctl.HostRequest{Name: "general"}); return err },
			409, "room general@abcd1234 is already hosted here"},
		{"say unjoined", func() error { _, err := c.Say(ctx, "quiet", ctl.SayRequest{Text: "hi"}); return err },
			409, `not a member of quiet@33333333: join it first with "meshctl join quiet@33333333"`},
		{"unavailable", func() error { _, err := c.Who(ctx, "general"); return err },
			503, "no link to the host of general yet: try again in a few seconds"},
		{"internal", func() error { return c.Leave(ctx, "general") },
			500, "disk on fire"},
		{"empty name", func() error { _, err := c.Host(ctx, ctl.HostRequest{Name: ""}); return err },
			400, `field "name" is required: the name of the room to host`},
		{"empty text", func() error { _, err := c.Say(ctx, "general", ctl.SayRequest{Text: ""}); return err },
			400, `field "text" (one message) or "lines" (several) is required and must not be empty`},
		{"text and lines", func() error {
			_, err := c.Say(ctx, "general", ctl.SayRequest{Text: "a", Lines: []string{"b"}})
			return err
		}, 400, `give "text" (one message) or "lines" (several), not both`},
		{"empty line", func() error {
			_, err := c.Say(ctx, "general", ctl.SayRequest{Lines: []string{"a", ""}})
			return err
		}, 400, `line 2 of field "lines" is empty`},
		{"too many lines", func() error {
			_, err := c.Say(ctx, "general", ctl.SayRequest{Lines: make([]string, ctl.MaxSayLines+1)})
			return err
		}, 400, fmt.Sprintf(`field "lines" has %d lines; say at most %d at a time`, ctl.MaxSayLines+1, ctl.MaxSayLines)},
		{"unknown room events", func() error { _, err := c.Events(ctx, "nope", 0, true); return err },
			404, `room "nope" is not known: run "meshctl rooms" to see the rooms on this network`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *ctl.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error = %v (%T), want *ctl.APIError", err, err)
			}
			if ae.Status != tt.wantStatus || ae.Message != tt.wantMsg {
				t.Errorf("APIError = %d %q, want %d %q", ae.Status, ae.Message, tt.wantStatus, tt.wantMsg)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want the bare message %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestRawRequests(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	hc := rawClient(t, srv.Socket)
	if _, err := srv.Client.Host(context.Background(), ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		method, path string
		body         string
		header       http.Header
		wantStatus   int
		wantInMsg    string // substring of the error message; "" for success
	}{
		{name: "unknown field", method: "POST", path: "/v0/rooms/join", body: `{"room":"general","bogus":1}`,
			wantStatus: 400, wantInMsg: `unknown field "bogus"`},
		{name: "two values", method: "POST", path: "/v0/rooms/host", body: `{"name":"a"}{"name":"b"}`,
			wantStatus: 400, wantInMsg: "more than one JSON value"},
		{name: "trailing garbage", method: "POST", path: "/v0/rooms/host", body: `{"name":"a"} x`,
			wantStatus: 400, wantInMsg: "not valid JSON"},
		{name: "empty body", method: "POST", path: "/v0/rooms/general/say",
			wantStatus: 400, wantInMsg: "request body is empty"},
		{name: "bad JSON", method: "POST", path: "/v0/rooms/general/say", body: `{"text":`,
			wantStatus: 400, wantInMsg: "ends in the middle"},
		{name: "wrong type", method: "POST", path: "/v0/rooms/general/say", body: `{"text":42}`,
			wantStatus: 400, wantInMsg: `field "text" must be a JSON string, not a JSON number`},
		{name: "not an object", method: "POST", path: "/v0/rooms/host", body: `["general"]`,
			wantStatus: 400, wantInMsg: "must be a JSON object, not a JSON array"},
		{name: "oversized body", method: "POST", path: "/v0/rooms/general/say",
			body:       `{"text":"` + strings.Repeat("x", ctlserver.MaxBodyBytes) + `"}`,
			wantStatus: 413, wantInMsg: "larger than the limit of 65536 bytes"},
		{name: "origin", method: "GET", path: "/v0/status", header: http.Header{"Origin": {"http://evil.example"}},
			wantStatus: 403, wantInMsg: "requests from web pages are refused"},
		{name: "empty origin", method: "GET", path: "/v0/status", header: http.Header{"Origin": {""}},
			wantStatus: 403, wantInMsg: "requests from web pages are refused"},
		{name: "referer", method: "GET", path: "/v0/status", header: http.Header{"Referer": {"http://evil.example/"}},
			wantStatus: 403, wantInMsg: "requests from web pages are refused"},
		{name: "unknown path", method: "GET", path: "/status",
			wantStatus: 404, wantInMsg: "the control API is under /v0/"},
		{name: "unknown v0 path", method: "GET", path: "/v0/nope",
			wantStatus: 404, wantInMsg: "GET /v0/status"},
		{name: "wrong method", method: "POST", path: "/v0/status",
			wantStatus: 405, wantInMsg: "POST is not allowed on /v0/status: use GET"},
		{name: "wrong method on room", method: "GET", path: "/v0/rooms/general/say",
			wantStatus: 405, wantInMsg: "use POST"},
		{name: "bad since", method: "GET", path: "/v0/events?since=-1",
			wantStatus: 400, wantInMsg: `since="-1" is not a sequence number`},
		{name: "bad initial", method: "GET", path: "/v0/events?initial=yes",
			wantStatus: 400, wantInMsg: `initial="yes" is not a boolean`},
		{name: "leave", method: "POST", path: "/v0/rooms/general/leave", wantStatus: 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := doRaw(t, hc, tt.method, tt.path, tt.body, tt.header)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %q", r.status, tt.wantStatus, r.body)
			}
			if v := r.header.Get(ctl.VersionHeader); v != ctltest.Version {
				t.Errorf("%s = %q, want %q", ctl.VersionHeader, v, ctltest.Version)
			}
			if tt.wantInMsg == "" {
				return
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.wantInMsg)
			}
		})
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	hc := rawClient(t, srv.Socket)
	if r := doRaw(t, hc, "GET", "/v0/rooms", "", nil); strings.TrimSpace(r.body) != "[]" {
		t.Errorf("GET /v0/rooms with no rooms = %q, want []", r.body)
	}
	b.AddRoom(ctl.Room{Name: "empty", Fingerprint: "44444444"})
	r := doRaw(t, hc, "GET", "/v0/rooms/empty/who", "", nil)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.body), &raw); err != nil {
		t.Fatalf("who body %q: %v", r.body, err)
	}
	if got := string(raw["members"]); got != "[]" {
		t.Errorf("members of an empty room = %s, want []", got)
	}
}

// nextEvent reads one event, failing the test on error.
func nextEvent(t *testing.T, s *ctl.EventStream) ctl.Event {
	t.Helper()
	ev, err := s.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

func TestEventStream(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	c := srv.Client
	ctx := context.Background()
	if _, err := c.Host(ctx, ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"one", "two"} {
		if _, err := c.Say(ctx, "general", ctl.SayRequest{Text: text}); err != nil {
			t.Fatal(err)
		}
	}

	s, err := c.Events(ctx, "general", 1, true)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	ref := "general@" + ctltest.Fingerprint
	want := []ctl.Event{
		{Kind: ctl.EventMessage, Room: ref, Seq: 2, Nick: ctltest.Nick, Fingerprint: ctltest.Fingerprint, Text: "two"},
		{Kind: ctl.EventSnapshotEnd, Room: "general"},
	}
	for i, w := range want {
		if got := nextEvent(t, s); got != w {
			t.Errorf("snapshot event %d = %+v, want %+v", i, got, w)
		}
	}
	if got, wantRaw := string(s.Raw()), `{"kind":"snapshot_end","room":"general"}`; got != wantRaw {
		t.Errorf("Raw() = %s, want %s", got, wantRaw)
	}

	// The subscription exists once Events returns, so live events published
	// now must arrive.
	if _, err := c.Say(ctx, "general", ctl.SayRequest{Text: "three"}); err != nil {
		t.Fatal(err)
	}
	b.Publish(ctl.Event{Kind: ctl.EventRoomState, Room: ref, State: "disconnected"})
	if got := nextEvent(t, s); got.Kind != ctl.EventMessage || got.Seq != 3 || got.Text != "three" {
		t.Errorf("live event = %+v, want message #3 three", got)
	}
	if got := nextEvent(t, s); got.Kind != ctl.EventRoomState || got.State != "disconnected" {
		t.Errorf("live event = %+v, want room_state disconnected", got)
	}
}

func TestEventStreamWire(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	req, err := http.NewRequest("GET", "http://"+ctl.Host+"/v0/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawClient(t, srv.Socket).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
	}
	// Without initial there is no snapshot_end: the first line is live.
	b.Publish(ctl.Event{Kind: ctl.EventRoomExpire, Room: "old@55555555"})
	line := make([]byte, 128)
	n, err := io.ReadAtLeast(resp.Body, line, len(`{"kind":"room_expire","room":"old@55555555"}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(line[:n]), `{"kind":"room_expire","room":"old@55555555"}`+"\n"; got != want {
		t.Errorf("first line = %q, want %q", got, want)
	}
}

func TestEventStreamEndsOnShutdown(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	s, err := srv.Client.Events(context.Background(), "", 0, false)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Serve returned %v, want nil after shutdown", err)
	}
	if ev, err := s.Next(); err != io.EOF {
		t.Errorf("Next after shutdown = %+v, %v; want io.EOF", ev, err)
	}
	// The backend drops a subscription when its context ends, in a
	// goroutine of its own (context.AfterFunc), which may run a moment
	// after Serve has returned.
	waitFor(t, "the subscription to end after shutdown", func() bool { return b.Subscribers() == 0 })
}

func TestEventStreamOverflow(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	if _, err := srv.Client.Host(context.Background(), ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}
	s, err := srv.Client.Events(context.Background(), "general", 0, false)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	b.Overflow()
	if got, want := nextEvent(t, s), (ctl.Event{Kind: ctl.EventOverflow, Room: "general"}); got != want {
		t.Errorf("event = %+v, want %+v", got, want)
	}
	if ev, err := s.Next(); err != io.EOF {
		t.Errorf("Next after overflow = %+v, %v; want io.EOF", ev, err)
	}
}

func TestEventStreamClientCancel(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := srv.Client.Events(ctx, "", 0, true)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	if ev := nextEvent(t, s); ev.Kind != ctl.EventSnapshotEnd {
		t.Fatalf("first event = %+v, want snapshot_end", ev)
	}
	cancel()
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %v, want context.Canceled", err)
	}
	// The server notices the closed connection and drops the subscription.
	waitFor(t, "subscription to end", func() bool { return b.Subscribers() == 0 })
}

func TestServeStopsWhenListenerFails(t *testing.T) {
	ln, err := ctlserver.Listen(t.TempDir()+"/s", "")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = ctlserver.New(ctltest.NewBackend(), "v", nil).Serve(context.Background(), ln)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener = %v, want an error wrapping net.ErrClosed", err)
	}
}

func TestNoGoroutinesOutliveServe(t *testing.T) {
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	ctx := context.Background()
	if _, err := srv.Client.Host(ctx, ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}
	var streams []*ctl.EventStream
	for range 3 {
		s, err := srv.Client.Events(ctx, "general", 0, true)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams = append(streams, s)
	}
	// A connection that never finishes its request headers.
	idle, err := net.Dial("unix", srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.Write([]byte("GET /v0/status HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for _, s := range streams {
		for {
			if _, err := s.Next(); err != nil {
				break
			}
		}
	}
	leaktest.Check(t, "meshd/ctl/ctlserver.", "meshd/ctl/ctltest.", "meshd/ctl/ctlserver/httpd.")
	if _, err := os.Stat(srv.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Serve returned: %v, want it removed", err)
	}
}

func TestEndpointsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatalf("read API docs: %v", err)
	}
	for _, e := range ctlserver.New(ctltest.NewBackend(), "v", nil).Endpoints() {
		if !strings.Contains(string(doc), e) {
			t.Errorf("docs/API.md does not mention %q", e)
		}
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// panicky is a backend with a bug.
type panicky struct{ *ctltest.Backend }

func (panicky) Who(string) (ctl.Who, error) { panic("bug in Who") }

func TestRefusalsAndPanicsCounted(t *testing.T) {
	srv := ctltest.Start(t, panicky{ctltest.NewBackend()})
	c, err := net.Dial("unix", srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v0/status HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get(ctl.VersionHeader) != ctltest.Version {
		t.Errorf("malformed header: %d, version %q; want 400 with the version header", resp.StatusCode, resp.Header.Get(ctl.VersionHeader))
	}
	r := doRaw(t, rawClient(t, srv.Socket), "GET", "/v0/rooms/general/who", "", nil)
	if msg := errorMessage(t, r); r.status != 500 || !strings.Contains(msg, "internal error") {
		t.Errorf("panicking handler: %d %q, want a 500 JSON error", r.status, msg)
	}
	st, err := srv.Client.Status(context.Background())
	if err != nil {
		t.Fatalf("Status after a panic: %v", err)
	}
	if st.Counters["ctl_requests_refused"] != 1 || st.Counters["ctl_handler_panics"] != 1 {
		t.Errorf("counters %v, want one refusal and one panic", st.Counters)
	}
}

// TestConnectionLimit holds every connection slot with an event stream and
// checks that one more request waits until a stream ends (docs/API.md: at
// most 64 connections are served at once).
func TestConnectionLimit(t *testing.T) {
	const maxConns = 64
	srv := ctltest.Start(t, ctltest.NewBackend())
	var streams []*ctl.EventStream
	for range maxConns {
		s, err := srv.Client.Events(context.Background(), "", 0, true)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if ev := nextEvent(t, s); ev.Kind != ctl.EventSnapshotEnd {
			t.Fatalf("first event %+v, want snapshot_end", ev)
		}
		streams = append(streams, s)
	}
	c, err := net.Dial("unix", srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v0/status HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a request beyond the limit was answered (%v) while %d streams were open", err, maxConns)
	case <-time.After(200 * time.Millisecond):
	}
	streams[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("request after a slot freed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not served after a stream ended")
	}
}
