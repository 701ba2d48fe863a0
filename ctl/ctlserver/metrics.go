package ctlserver

import (
	"bytes"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"meshd/ctl"
	"meshd/ctl/ctlserver/httpd"
)

// MetricsContentType is the Content-Type of GET /v0/metrics: Prometheus's
// text exposition format.
const MetricsContentType = "text/plain; version=0.0.4"

// memInterval is how old a memory reading may be: runtime.ReadMemStats
// stops the world briefly, so a scraper polling in a loop must not make
// it run on every request.
const memInterval = time.Second

// memCache holds the latest reading of the process's memory.
type memCache struct {
	mu   sync.Mutex
	at   time.Time
	last ctl.Memory
}

func (c *memCache) read() ctl.Memory {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.at.IsZero() || now.Sub(c.at) >= memInterval {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		c.last = ctl.Memory{HeapBytes: ms.HeapAlloc, SysBytes: ms.Sys, Goroutines: runtime.NumGoroutine()}
		c.at = now
	}
	return c.last
}

func (s *Server) metrics(w httpd.ResponseWriter, r *httpd.Request) {
	b := writeMetrics(s.fullStatus(), s.mem.read())
	w.Header().Set("Content-Type", MetricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(httpd.StatusOK)
	_, _ = w.Write(b) // a failed write means the scraper left
}

// metric is one metric family of the exposition.
type metric struct {
	name, help, typ string
	samples         []sample
}

type sample struct {
	labels string // `{kind="hosted"}` or ""
	value  string
}

// writeMetrics renders st and mem in the Prometheus text format 0.0.4:
// every counter as meshd_<name>_total, then gauges for uptime, rooms and
// memory, all families sorted by name so the output is deterministic.
func writeMetrics(st ctl.Status, mem ctl.Memory) []byte {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	ms := []metric{
		{"meshd_uptime_seconds", "Seconds since meshd started.", "gauge",
			[]sample{{"", strconv.FormatFloat(time.Duration(st.Uptime).Seconds(), 'f', -1, 64)}}},
		{"meshd_rooms", "Rooms by kind: hosted here, joined here, and known (announced on the network).", "gauge",
			[]sample{
				{`{kind="hosted"}`, i(int64(st.Hosted))},
				{`{kind="joined"}`, i(int64(st.Joined))},
				{`{kind="known"}`, i(int64(st.Known))},
			}},
		{"meshd_go_heap_bytes", "Bytes of allocated heap objects (Go runtime HeapAlloc).", "gauge", []sample{{"", u(mem.HeapBytes)}}},
		{"meshd_go_sys_bytes", "Bytes of memory obtained from the OS by the Go runtime.", "gauge", []sample{{"", u(mem.SysBytes)}}},
		{"meshd_goroutines", "Goroutines that currently exist.", "gauge", []sample{{"", i(int64(mem.Goroutines))}}},
	}
	seen := make(map[string]bool, len(ms)+len(st.Counters))
	for _, m := range ms {
		seen[m.name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(st.Counters)) {
		v := st.Counters[name]
		// Every counter the daemon keeps only ever grows; a value that can
		// fall would need to be a gauge without the _total suffix.
		mn := "meshd_" + metricName(name) + "_total"
		if seen[mn] {
			continue // two counter names that differ only in characters Prometheus does not allow
		}
		seen[mn] = true
		help := ctl.CounterHelp(name)
		if help == "" {
			help = "meshd counter " + name + "."
		} else {
			help = strings.ToUpper(help[:1]) + help[1:] + "."
		}
		ms = append(ms, metric{mn, help, "counter", []sample{{"", i(v)}}})
	}
	// sort.Slice, not slices.SortFunc: one sort for every element type (each
	// slices.SortFunc over a struct type is compiled anew, some 15 KB of a
	// router's 6 MiB budget), on a path where speed does not matter.
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })

	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, escapeHelp(m.help), m.name, m.typ)
		for _, s := range m.samples {
			fmt.Fprintf(&b, "%s%s %s\n", m.name, s.labels, s.value)
		}
	}
	return b.Bytes()
}

// metricName maps a counter name to the characters a Prometheus metric
// name may hold: [a-zA-Z0-9_].
func metricName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// escapeHelp escapes a HELP text as the format requires.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
