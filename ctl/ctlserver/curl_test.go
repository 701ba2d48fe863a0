package ctlserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctltest"
)

// The control API is documented as usable with curl --unix-socket; these
// tests hold the server to that with the real curl, whose HTTP/1.1 is a
// different implementation from the Go client's.

func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Skipf("curl is not installed (%v): the curl tests need it on PATH", err)
	}
	return p
}

// curl runs curl against the socket with args and returns its stdout.
func curl(t *testing.T, socket string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curlPath(t), append([]string{"-sS", "--unix-socket", socket}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

const base = "http://" + ctl.Host

func TestCurl(t *testing.T) {
	curlPath(t)
	b := ctltest.NewBackend()
	srv := ctltest.Start(t, b)
	if _, err := srv.Client.Host(context.Background(), ctl.HostRequest{Name: "general"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return "@" + p
	}

	t.Run("status", func(t *testing.T) {
		out := curl(t, srv.Socket, "-D", "-", base+"/v0/status")
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "\r\nMeshd-Version: "+ctltest.Version+"\r\n") ||
			!strings.Contains(head, "\r\nContent-Length: ") {
			t.Errorf("head %q, want 200 with the version and a Content-Length", head)
		}
		var st ctl.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil || st.Fingerprint != ctltest.Fingerprint {
			t.Errorf("body %q: %v", body, err)
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		// Two URLs in one curl share a connection if the server keeps it.
		out := curl(t, srv.Socket, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
			base+"/v0/status", base+"/v0/rooms")
		if out != "1\n0\n" {
			t.Errorf("new connections per request %q, want 1 then 0", out)
		}
	})

	t.Run("say with 100-continue", func(t *testing.T) {
		text := strings.Repeat("x", 2000)
		hdrs := filepath.Join(dir, "say.headers")
		body := curl(t, srv.Socket, "-H", "Expect: 100-continue", "-H", "Content-Type: application/json", "-D", hdrs,
			"--data-binary", file("say.json", `{"text":"`+text+`"}`), base+"/v0/rooms/general/say")
		head, err := os.ReadFile(hdrs)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(head), "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") {
			t.Errorf("response heads %q, want 100 Continue then 200", head)
		}
		var res ctl.SayResult
		if err := json.Unmarshal([]byte(body), &res); err != nil || res.Seq == 0 {
			t.Errorf("say: %q (%v)", body, err)
		}
	})

	t.Run("too large", func(t *testing.T) {
		out := curl(t, srv.Socket, "--data-binary", file("big", strings.Repeat("x", 70000)), "-w", "\n%{http_code}", base+"/v0/rooms/general/say")
		if !strings.HasSuffix(out, "\n413") || !strings.Contains(out, `"error":"request body is larger than the limit of 65536 bytes"`) {
			t.Errorf("oversized body: %q, want a 413 JSON error", out)
		}
	})

	t.Run("chunked upload", func(t *testing.T) {
		out := curl(t, srv.Socket, "-H", "Transfer-Encoding: chunked", "--data-binary", file("small", `{"text":"hi"}`),
			"-w", "\n%{http_code}", base+"/v0/rooms/general/say")
		if !strings.HasSuffix(out, "\n411") || !strings.Contains(out, "chunked request bodies are not supported") {
			t.Errorf("chunked body: %q, want a 411 JSON error", out)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		out := curl(t, srv.Socket, "-I", base+"/v0/status")
		if !strings.HasPrefix(out, "HTTP/1.1 405 ") || !strings.Contains(out, "\r\nAllow: GET\r\n") {
			t.Errorf("HEAD: %q, want 405 with Allow: GET", out)
		}
	})

	t.Run("events", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, curlPath(t), "-sSN", "--unix-socket", srv.Socket, base+"/v0/events?room=general&initial=1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		lines := bufio.NewScanner(stdout)
		lines.Buffer(nil, 1<<20)
		for lines.Scan() {
			if strings.Contains(lines.Text(), `"kind":"snapshot_end"`) {
				break
			}
		}
		// Live events reach curl as they happen: each line is flushed.
		if _, err := srv.Client.Say(context.Background(), "general", ctl.SayRequest{Text: "live"}); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || !strings.Contains(lines.Text(), `"text":"live"`) {
			t.Fatalf("next line %q (%v), want the live message", lines.Text(), lines.Err())
		}
		cancel()
		waitFor(t, "the subscription to end once curl is gone", func() bool { return b.Subscribers() == 0 })
	})
}
