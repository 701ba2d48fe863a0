package ctlserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"meshd/ctl"
	"meshd/ctl/ctlserver/httpd"
)

func TestPolicy(t *testing.T) {
	// The daemon runs as uid 500; the operator group is "meshd", gid 900.
	// User 1001 has 900 as a supplementary group, 1002 has not, 1003 is
	// not in the user database.
	pol := Policy{
		OwnUID: 500,
		Group:  "meshd",
		GID:    900,
		UserGroups: func(uid uint32) ([]string, error) {
			switch uid {
			case 1001:
				return []string{"1001", "900"}, nil
			case 1002:
				return []string{"1002", "27"}, nil
			}
			return nil, errors.New("unknown user")
		},
	}
	noGroup := pol
	noGroup.Group, noGroup.GID = "", -1
	tests := []struct {
		name     string
		pol      Policy
		peer     Peer
		operator bool
	}{
		{"root", pol, Peer{UID: 0, GID: 0}, true},
		{"root without group", noGroup, Peer{UID: 0, GID: 0}, true},
		{"own uid", pol, Peer{UID: 500, GID: 500}, true},
		{"own uid without group", noGroup, Peer{UID: 500, GID: 500}, true},
		{"primary gid", pol, Peer{UID: 1004, GID: 900}, true},
		{"supplementary member", pol, Peer{UID: 1001, GID: 1001}, true},
		{"stranger", pol, Peer{UID: 1002, GID: 1002}, false},
		{"unknown user", pol, Peer{UID: 1003, GID: 1003}, false},
		{"member but no group configured", noGroup, Peer{UID: 1001, GID: 1001}, false},
		{"primary gid but no group configured", noGroup, Peer{UID: 1004, GID: 900}, false},
	}
	requests := []struct {
		method, path string
		readOnly     bool
	}{
		{"GET", "/v0/status", true},
		{"GET", "/v0/metrics", true},
		{"GET", "/v0/rooms", false},
		{"GET", "/v0/events", false},
		{"GET", "/v0/rooms/general/who", false},
		{"GET", "/v0/debug/pprof/heap", false},
		{"GET", "/v0/debug/pprof/profile", false},
		{"POST", "/v0/rooms/host", false},
		{"POST", "/v0/status", false},
		{"HEAD", "/v0/status", false},
		{"GET", "/v0//status", false},
		{"GET", "/nowhere", false},
	}
	for _, tt := range tests {
		if got := tt.pol.Operator(tt.peer); got != tt.operator {
			t.Errorf("%s: Operator(%+v) = %v, want %v", tt.name, tt.peer, got, tt.operator)
		}
		for _, rq := range requests {
			want := tt.operator || rq.readOnly
			if got := tt.pol.Allowed(tt.peer, rq.method, rq.path); got != want {
				t.Errorf("%s: Allowed(%+v, %s %s) = %v, want %v", tt.name, tt.peer, rq.method, rq.path, got, want)
			}
		}
	}
}

// fakeBackend answers Status only; the access tests never get further.
type fakeBackend struct{ Backend }

func (fakeBackend) Status() ctl.Status {
	return ctl.Status{Version: "v", Counters: map[string]int64{"packets_sent": 1}}
}

func TestAccessCheckInHandler(t *testing.T) {
	pol := Policy{OwnUID: 500, Group: "meshd", GID: 900,
		UserGroups: func(uint32) ([]string, error) { return nil, errors.New("no") }}
	s := New(fakeBackend{}, "v", nil)
	type result struct {
		Code int
		Body string
	}
	// do serves one request through httpd with a as the connection's
	// access, as connContext would have set it.
	do := func(a *access, method, path string) result {
		t.Helper()
		ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		hs := &httpd.Server{Handler: s, ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			if a == nil {
				return ctx
			}
			return context.WithValue(ctx, accessKey{}, a)
		}}
		done := make(chan error, 1)
		go func() { done <- hs.Serve(ctx, ln) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ln.Addr().String())
		}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest(method, "http://meshd.sock"+path, strings.NewReader(`{"name":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return result{resp.StatusCode, string(b)}
	}
	stranger := &access{policy: pol, peer: Peer{UID: 4242, GID: 4242}, known: true}
	for _, path := range []string{"/v0/status", "/v0/metrics"} {
		if w := do(stranger, "GET", path); w.Code != http.StatusOK {
			t.Errorf("stranger GET %s = %d %s, want 200", path, w.Code, w.Body)
		}
	}
	w := do(stranger, "POST", "/v0/rooms/host")
	var e ctl.Error
	if err := json.Unmarshal([]byte(w.Body), &e); err != nil || w.Code != http.StatusForbidden {
		t.Fatalf("stranger POST /v0/rooms/host = %d %s, want 403 JSON", w.Code, w.Body)
	}
	const want = `permission denied: POST /v0/rooms/host needs root or membership of group "meshd"; ask an operator to add you (usermod -aG meshd `
	if !strings.HasPrefix(e.Error, want) || !strings.HasSuffix(e.Error, ")") {
		t.Errorf("403 message = %q, want it to start %q", e.Error, want)
	}
	for _, path := range []string{"/v0/rooms", "/v0/debug/pprof/heap", "/v0/debug/pprof/profile?seconds=1"} {
		if w := do(stranger, "GET", path); w.Code != http.StatusForbidden {
			t.Errorf("stranger GET %s = %d, want 403", path, w.Code)
		}
	}
	unknown := &access{policy: pol}
	if w := do(unknown, "POST", "/v0/rooms/host"); w.Code != http.StatusForbidden || !strings.Contains(w.Body, "cannot tell who") {
		t.Errorf("unknown peer POST = %d %s, want 403", w.Code, w.Body)
	}
	if w := do(unknown, "GET", "/v0/status"); w.Code != http.StatusOK {
		t.Errorf("unknown peer GET /v0/status = %d, want 200", w.Code)
	}
	owner := &access{policy: pol, peer: Peer{UID: 500, GID: 500}, known: true}
	if w := do(owner, "GET", "/v0/nowhere"); w.Code != http.StatusNotFound {
		t.Errorf("owner GET /v0/nowhere = %d, want 404 (access granted, no such path)", w.Code)
	}
}
