package httpd_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"meshd/ctl/ctlserver/httpd"
)

func TestMux(t *testing.T) {
	var m httpd.Mux
	h := func(name string) httpd.HandlerFunc {
		return func(w httpd.ResponseWriter, r *httpd.Request) {
			fmt.Fprintf(w, "%s room=%q nick=%q", name, r.PathValue("room"), r.PathValue("nick"))
		}
	}
	m.Handle("GET", "/v0/status", h("status"))
	m.Handle("POST", "/v0/rooms/{room}/say", h("say"))
	m.Handle("POST", "/v0/rooms/{room}/{nick}", h("any"))
	m.Handle("POST", "/v0/rooms/join/{nick}", h("join")) // more literal than the line above
	m.Handle("DELETE", "/v0/rooms/{room}/say", h("unsay"))
	ts := start(t, &httpd.Server{Handler: &m})

	tests := []struct {
		method, target string
		code           int
		body, allow    string
	}{
		{"GET", "/v0/status", 200, `status room="" nick=""`, ""},
		{"GET", "/v0/%73tatus", 200, `status room="" nick=""`, ""},
		{"POST", "/v0/rooms/a%2Fb%20c/say", 200, `say room="a/b c" nick=""`, ""},
		{"POST", "/v0/rooms/general/alice", 200, `any room="general" nick="alice"`, ""},
		{"POST", "/v0/rooms/join/alice", 200, `join room="" nick="alice"`, ""},
		{"POST", "/v0/rooms/say/say", 200, `say room="say" nick=""`, ""},
		{"GET", "/v0/rooms/general/say", 405, "", "DELETE, POST"},
		{"HEAD", "/v0/status", 405, "", "GET"},
		{"POST", "/v0/rooms//say", 404, "", ""}, // a wildcard never matches an empty segment
		{"GET", "/v0/status/", 404, "", ""},
		{"GET", "/v0/Status", 404, "", ""},
		{"GET", "/", 404, "", ""},
		{"GET", "/v0/status?x=1", 200, `status room="" nick=""`, ""},
	}
	rc := ts.dial(t)
	for _, tt := range tests {
		rc.send(tt.method + " " + tt.target + " HTTP/1.1\r\nHost: t\r\n\r\n")
		r := rc.read(tt.method)
		if r.StatusCode != tt.code || tt.body != "" && r.body != tt.body || r.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d %q Allow %q; want %d %q Allow %q", tt.method, tt.target,
				r.StatusCode, r.body, r.Header.Get("Allow"), tt.code, tt.body, tt.allow)
		}
		if tt.method == "HEAD" && r.body != "" {
			t.Errorf("HEAD answered with a body %q", r.body)
		}
	}
}

func TestMuxHooks(t *testing.T) {
	m := httpd.Mux{
		NotFound: httpd.HandlerFunc(func(w httpd.ResponseWriter, r *httpd.Request) {
			w.WriteHeader(httpd.StatusNotFound)
			io.WriteString(w, "custom 404 "+r.URL.Path)
		}),
		MethodNotAllowed: func(w httpd.ResponseWriter, r *httpd.Request, allow []string) {
			w.WriteHeader(httpd.StatusMethodNotAllowed)
			io.WriteString(w, "use "+strings.Join(allow, "|"))
		},
	}
	m.HandleFunc("GET", "/a", func(httpd.ResponseWriter, *httpd.Request) {})
	m.HandleFunc("PUT", "/a", func(httpd.ResponseWriter, *httpd.Request) {})
	ts := start(t, &httpd.Server{Handler: &m})
	rc := ts.dial(t)
	rc.send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" + "GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
	if r := rc.read("POST"); r.StatusCode != 405 || r.body != "use GET|PUT" || r.Header.Get("Allow") != "GET, PUT" {
		t.Errorf("405 hook: %d %q Allow %q", r.StatusCode, r.body, r.Header.Get("Allow"))
	}
	if r := rc.read("GET"); r.StatusCode != 404 || r.body != "custom 404 /b" {
		t.Errorf("404 hook: %d %q", r.StatusCode, r.body)
	}
}

func TestMuxRejectsBadRoutes(t *testing.T) {
	for _, rt := range [][2]string{
		{"GET", "nope"}, {"G T", "/a"}, {"GET", "/a//b"}, {"GET", "/{}"}, {"GET", "/{a}/{a}"}, {"GET", "/a{b}"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q, %q) did not panic", rt[0], rt[1])
				}
			}()
			var m httpd.Mux
			m.HandleFunc(rt[0], rt[1], func(httpd.ResponseWriter, *httpd.Request) {})
		}()
	}
	defer func() {
		if recover() == nil {
			t.Error("a route registered twice did not panic")
		}
	}()
	var m httpd.Mux
	m.HandleFunc("GET", "/a/{x}", func(httpd.ResponseWriter, *httpd.Request) {})
	m.HandleFunc("GET", "/a/{y}", func(httpd.ResponseWriter, *httpd.Request) {})
}
