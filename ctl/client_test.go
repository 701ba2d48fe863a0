package ctl_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"meshd/ctl"
	"meshd/ctl/ctltest"
)

func TestClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	for _, path := range []string{filepath.Join(dir, "missing.sock"), stale} {
		c := &ctl.Client{Socket: path}
		_, err := c.Status(context.Background())
		if !errors.Is(err, ctl.ErrNotRunning) {
			t.Errorf("Status on %s = %v, want an error wrapping ErrNotRunning", path, err)
			continue
		}
		want := `meshd is not running (nothing listening on ` + path + `); start it with "meshd" or "systemctl start meshd", or point -socket / MESHD_SOCKET at its socket`
		if err.Error() != want {
			t.Errorf("error = %q\nwant    %q", err, want)
		}
		if _, err := c.Events(context.Background(), "", 0, true); !errors.Is(err, ctl.ErrNotRunning) {
			t.Errorf("Events on %s = %v, want an error wrapping ErrNotRunning", path, err)
		}
	}
}

func TestClientDefaultSocket(t *testing.T) {
	srv := ctltest.Start(t, ctltest.NewBackend())
	t.Setenv("MESHD_SOCKET", srv.Socket)
	var c ctl.Client // the zero value finds the socket itself
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("Status with MESHD_SOCKET: %v", err)
	}
}

// TestClientForeignServer checks the error for a socket whose server does
// not speak meshd's JSON errors.
func TestClientForeignServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot here", http.StatusTeapot)
	})}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close(); <-done })

	c := &ctl.Client{Socket: path}
	_, err = c.Rooms(context.Background())
	var ae *ctl.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTeapot || !strings.Contains(ae.Message, "418 I'm a teapot: teapot here") {
		t.Errorf("Rooms = %v, want an APIError quoting the foreign answer", err)
	}
}
