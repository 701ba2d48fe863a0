package ctlserver

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"meshd/ctl/ctlserver/httpd"
)

// Bounds of a CPU profile taken through the API.
const (
	defaultProfileTime = 30 * time.Second
	maxProfileTime     = 5 * time.Minute
)

// cpuProfile serialises CPU profiles: the runtime profiles one at a time.
var cpuProfile sync.Mutex

// pprofProfile answers GET /v0/debug/pprof/{profile} with a profile of the
// daemon's process in pprof's format, for `go tool pprof`: "profile" is a
// CPU profile over ?seconds= (default 30), any other name one of the
// runtime's profiles (heap, allocs, goroutine, mutex, block,
// threadcreate), with ?debug=N for its text forms. The server runs in the
// daemon's process, so these are the daemon's. Only operators may take
// them (the access policy allows nothing else under /v0/debug/): a
// profile shows what the daemon is doing and costs it CPU while it runs.
func (s *Server) pprofProfile(w httpd.ResponseWriter, r *httpd.Request) {
	name := r.PathValue("profile")
	q := r.URL.Query()
	if name == "profile" {
		s.cpuProfile(w, r)
		return
	}
	p := pprof.Lookup(name)
	if p == nil {
		writeError(w, httpd.StatusNotFound, fmt.Sprintf("no profile %q: use profile (CPU), heap, allocs, goroutine, mutex, block or threadcreate", name))
		return
	}
	debug := 0
	if v := q.Get("debug"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 2 {
			writeError(w, httpd.StatusBadRequest, fmt.Sprintf("debug=%q: use 0 (binary, for go tool pprof), 1 or 2 (text)", v))
			return
		}
		debug = n
	}
	// Written to a buffer first, so that a failure is still an error
	// answer and not half a profile.
	var buf bytes.Buffer
	if err := p.WriteTo(&buf, debug); err != nil {
		writeError(w, httpd.StatusInternalServerError, fmt.Sprintf("profile %s: %v", name, err))
		return
	}
	writeProfile(w, name, debug, buf.Bytes())
}

func (s *Server) cpuProfile(w httpd.ResponseWriter, r *httpd.Request) {
	d := defaultProfileTime
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 || time.Duration(n*float64(time.Second)) > maxProfileTime {
			writeError(w, httpd.StatusBadRequest, fmt.Sprintf("seconds=%q: want a number of seconds above 0, at most %v", v, maxProfileTime))
			return
		}
		d = time.Duration(n * float64(time.Second))
	}
	if !cpuProfile.TryLock() {
		writeError(w, httpd.StatusConflict, "a CPU profile is already being taken; try again when it is done")
		return
	}
	defer cpuProfile.Unlock()
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		// Something else in the process profiles the CPU (a test run with
		// -cpuprofile, say).
		writeError(w, httpd.StatusConflict, fmt.Sprintf("cannot start a CPU profile: %v", err))
		return
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
	}
	pprof.StopCPUProfile()
	if err := r.Context().Err(); err != nil {
		s.log.Debug("CPU profile abandoned", "err", err)
		return
	}
	writeProfile(w, "profile", 0, buf.Bytes())
}

func writeProfile(w httpd.ResponseWriter, name string, debug int, b []byte) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if debug > 0 {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+".pprof"))
	}
	w.WriteHeader(httpd.StatusOK)
	_, _ = w.Write(b) // a failed write means the client left
}
