package httpd

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Mux routes requests by method and path. A pattern is a path whose
// segments are literal or a {name} wildcard that matches one non-empty
// segment; the handler reads its value, unescaped, with
// Request.PathValue. Segments are matched on the escaped path, so
// "/v0/rooms/a%2Fb/say" matches "/v0/rooms/{room}/say" with room "a/b".
//
// When several patterns match, the one with the most literal segments
// wins, then the one registered first. A path that some pattern matches
// for other methods only is answered by MethodNotAllowed; HEAD is not
// implied by GET. Any other path goes to NotFound.
type Mux struct {
	// NotFound answers a path no pattern matches; nil means a plain 404.
	NotFound Handler
	// MethodNotAllowed answers a method no pattern for the path has;
	// allow lists the methods that do, sorted, and the Allow header is
	// already set. Nil means a plain 405.
	MethodNotAllowed func(w ResponseWriter, r *Request, allow []string)

	routes []route
}

type route struct {
	method   string
	segs     []string // literal segments, or "" for a wildcard
	names    []string // wildcard names, by segment; "" for literals
	literals int
	h        Handler
}

// Handle registers h for method and pattern. It panics if the pattern is
// malformed or already registered for method: routes are fixed at start-up
// and a mistake in them is a bug.
func (m *Mux) Handle(method, pattern string, h Handler) {
	if !isToken(method) || !strings.HasPrefix(pattern, "/") {
		panic(fmt.Sprintf("httpd: bad route %q %q", method, pattern))
	}
	rt := route{method: method, h: h}
	for _, seg := range strings.Split(pattern[1:], "/") {
		name := ""
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name = seg[1 : len(seg)-1]
			if name == "" || slices.Contains(rt.names, name) {
				panic(fmt.Sprintf("httpd: bad wildcard in route %q", pattern))
			}
			seg = ""
		} else {
			if seg == "" || strings.ContainsAny(seg, "{}") {
				panic(fmt.Sprintf("httpd: bad segment %q in route %q", seg, pattern))
			}
			rt.literals++
		}
		rt.segs = append(rt.segs, seg)
		rt.names = append(rt.names, name)
	}
	for _, o := range m.routes {
		if o.method == method && slices.Equal(o.segs, rt.segs) {
			panic(fmt.Sprintf("httpd: route %s %s registered twice", method, pattern))
		}
	}
	m.routes = append(m.routes, rt)
}

// HandleFunc registers f for method and pattern.
func (m *Mux) HandleFunc(method, pattern string, f func(ResponseWriter, *Request)) {
	m.Handle(method, pattern, HandlerFunc(f))
}

// ServeHTTP dispatches r to the handler of the best matching route.
func (m *Mux) ServeHTTP(w ResponseWriter, r *Request) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			segs = nil // cannot happen for a path readRequest accepted
			break
		}
		segs[i] = u
	}
	var best *route
	var allow []string
	for i := range m.routes {
		rt := &m.routes[i]
		if !rt.match(segs) {
			continue
		}
		if rt.method != r.Method {
			if !slices.Contains(allow, rt.method) {
				allow = append(allow, rt.method)
			}
			continue
		}
		if best == nil || rt.literals > best.literals {
			best = rt
		}
	}
	switch {
	case best != nil:
		r.params = r.params[:0]
		for i, name := range best.names {
			if name != "" {
				r.params = append(r.params, param{name, segs[i]})
			}
		}
		best.h.ServeHTTP(w, r)
	case allow != nil:
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		if m.MethodNotAllowed != nil {
			m.MethodNotAllowed(w, r, allow)
			return
		}
		plainError(w, StatusMethodNotAllowed, r.Method+" is not allowed here")
	case m.NotFound != nil:
		m.NotFound.ServeHTTP(w, r)
	default:
		plainError(w, StatusNotFound, "no such endpoint")
	}
}

func (rt *route) match(segs []string) bool {
	if len(segs) != len(rt.segs) {
		return false
	}
	for i, s := range rt.segs {
		if s == "" && segs[i] == "" || s != "" && s != segs[i] {
			return false
		}
	}
	return true
}

func plainError(w ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}
