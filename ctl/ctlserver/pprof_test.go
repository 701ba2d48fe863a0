package ctlserver_test

import (
	"bytes"
	"net/http"
	"testing"

	"meshd/ctl/ctltest"
)

// gzipMagic starts every profile in pprof's binary format.
var gzipMagic = []byte{0x1f, 0x8b}

// TestProfiles takes profiles of the server's process the way an operator
// would (go tool pprof reads the binary ones), and checks the refusals.
func TestProfiles(t *testing.T) {
	srv := ctltest.Start(t, ctltest.NewBackend())
	hc := rawClient(t, srv.Socket)
	for _, path := range []string{"/v0/debug/pprof/heap", "/v0/debug/pprof/goroutine", "/v0/debug/pprof/profile?seconds=0.2"} {
		r := doRaw(t, hc, "GET", path, "", nil)
		if r.status != http.StatusOK || !bytes.HasPrefix([]byte(r.body), gzipMagic) {
			t.Errorf("GET %s = %d, %d bytes starting %q; want 200 and a gzipped profile", path, r.status, len(r.body), r.body[:min(len(r.body), 40)])
		}
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
	}
	r := doRaw(t, hc, "GET", "/v0/debug/pprof/goroutine?debug=1", "", nil)
	if r.status != http.StatusOK || !bytes.Contains([]byte(r.body), []byte("goroutine profile:")) {
		t.Errorf("goroutine?debug=1 = %d %q, want the text form", r.status, r.body[:min(len(r.body), 80)])
	}
	for _, tt := range []struct {
		path string
		code int
		msg  string
	}{
		{"/v0/debug/pprof/nothing", 404, `no profile "nothing"`},
		{"/v0/debug/pprof/heap?debug=x", 400, "debug="},
		{"/v0/debug/pprof/profile?seconds=0", 400, "seconds="},
		{"/v0/debug/pprof/profile?seconds=3600", 400, "at most 5m0s"},
	} {
		r := doRaw(t, hc, "GET", tt.path, "", nil)
		if r.status != tt.code {
			t.Errorf("GET %s = %d, want %d", tt.path, r.status, tt.code)
			continue
		}
		if msg := errorMessage(t, r); !bytes.Contains([]byte(msg), []byte(tt.msg)) {
			t.Errorf("GET %s: %q, want it to mention %q", tt.path, msg, tt.msg)
		}
	}
}
