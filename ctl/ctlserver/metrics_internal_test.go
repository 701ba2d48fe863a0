package ctlserver

import (
	"testing"
	"time"

	"meshd/ctl"
)

func TestMetricsText(t *testing.T) {
	st := ctl.Status{
		Uptime: ctl.Duration(90 * time.Second),
		Hosted: 1, Joined: 2, Known: 3,
		Counters: map[string]int64{"packets_sent": 7, "data_delivered": 12, "odd-name": 1},
	}
	mem := ctl.Memory{HeapBytes: 1 << 20, SysBytes: 8 << 20, Goroutines: 12}
	const want = `# HELP meshd_data_delivered_total Room records delivered in order.
# TYPE meshd_data_delivered_total counter
meshd_data_delivered_total 12
# HELP meshd_go_heap_bytes Bytes of allocated heap objects (Go runtime HeapAlloc).
# TYPE meshd_go_heap_bytes gauge
meshd_go_heap_bytes 1048576
# HELP meshd_go_sys_bytes Bytes of memory obtained from the OS by the Go runtime.
# TYPE meshd_go_sys_bytes gauge
meshd_go_sys_bytes 8388608
# HELP meshd_goroutines Goroutines that currently exist.
# TYPE meshd_goroutines gauge
meshd_goroutines 12
# HELP meshd_odd_name_total meshd counter odd-name.
# TYPE meshd_odd_name_total counter
meshd_odd_name_total 1
# HELP meshd_packets_sent_total Packets sent.
# TYPE meshd_packets_sent_total counter
meshd_packets_sent_total 7
# HELP meshd_rooms Rooms by kind: hosted here, joined here, and known (announced on the network).
# TYPE meshd_rooms gauge
meshd_rooms{kind="hosted"} 1
meshd_rooms{kind="joined"} 2
meshd_rooms{kind="known"} 3
# HELP meshd_uptime_seconds Seconds since meshd started.
# TYPE meshd_uptime_seconds gauge
meshd_uptime_seconds 90
`
	for range 3 { // map order must not show
		if got := string(writeMetrics(st, mem)); got != want {
			t.Fatalf("metrics text:\n%s\nwant:\n%s", got, want)
		}
	}
}

func TestMemCacheRateLimited(t *testing.T) {
	var c memCache
	first := c.read()
	if first.SysBytes == 0 || first.Goroutines == 0 {
		t.Fatalf("memory reading %+v is empty", first)
	}
	at := c.at
	c.read()
	if c.at != at {
		t.Error("a second reading within memInterval read the runtime again")
	}
}
