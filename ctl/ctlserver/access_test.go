package ctlserver_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"meshd/ctl"
	"meshd/ctl/ctltest"
)

// TestCurrentUserAllowed checks, over a real socket and SO_PEERCRED, that
// the user running the test (root or not: the daemon's own user either
// way) may do everything.
func TestCurrentUserAllowed(t *testing.T) {
	srv := ctltest.Start(t, ctltest.NewBackend())
	ctx := context.Background()
	if _, err := srv.Client.Host(ctx, ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatalf("Host as the daemon's own user: %v", err)
	}
	if _, err := srv.Client.Rooms(ctx); err != nil {
		t.Fatalf("Rooms as the daemon's own user: %v", err)
	}
	st, err := srv.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory == nil || st.Memory.SysBytes == 0 || st.Memory.Goroutines == 0 {
		t.Errorf("status memory = %+v, want the server's process memory", st.Memory)
	}
}

func TestMetricsOverSocket(t *testing.T) {
	srv := ctltest.Start(t, ctltest.NewBackend())
	r := doRaw(t, rawClient(t, srv.Socket), "GET", "/v0/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v0/metrics = %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; version=0.0.4" {
		t.Errorf("Content-Type = %q, want the Prometheus text format", ct)
	}
	for _, want := range []string{
		"# TYPE meshd_packets_in_total counter\nmeshd_packets_in_total 10\n",
		"meshd_rooms{kind=\"known\"} 0\n",
		"meshd_uptime_seconds 90\n",
		"# TYPE meshd_go_heap_bytes gauge\n",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, r.body)
		}
	}
	if r := doRaw(t, rawClient(t, srv.Socket), "POST", "/v0/metrics", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /v0/metrics = %d, want 405", r.status)
	}
}
