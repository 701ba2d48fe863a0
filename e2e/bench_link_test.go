package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// linkKinds sorts the host's link traffic by port (the daemon's defaults:
// discovery 7701, joins and sessions 7702, room data 7703); the first
// kind that matches a packet counts it.
var linkKinds = []struct{ name, dir, match string }{
	{"data_out", "output", `oifname "eth0" udp dport 7703`}, // shards and heartbeats
	{"data_in", "input", `iifname "eth0" udp dport 7703`},   // members' NACKs
	{"session_out", "output", `oifname "eth0" tcp sport 7702`},
	{"session_in", "input", `iifname "eth0" tcp dport 7702`},
	{"discovery_out", "output", `oifname "eth0" udp dport 7701`},
	{"discovery_in", "input", `iifname "eth0" udp dport 7701`},
	{"other_out", "output", `oifname "eth0"`},
	{"other_in", "input", `iifname "eth0"`},
}

// countLink sets up nftables counters of linkKinds in h's namespace.
func countLink(h *host) {
	h.t.Helper()
	exec.Command("ip", "netns", "exec", h.ns, "nft", "delete", "table", "inet", "meshd_bench").Run()
	h.nft("add", "table", "inet", "meshd_bench")
	for _, dir := range []string{"input", "output"} {
		h.nft("add", "chain", "inet", "meshd_bench", dir, "{ type filter hook "+dir+" priority -10 ; policy accept ; }")
	}
	// The host's own multicast, looped back to its sockets, comes in
	// on eth0 too, but never crossed the link.
	h.nft("add", "rule", "inet", "meshd_bench", "input", "fib", "saddr", "type", "local", "accept")
	for _, k := range linkKinds {
		h.nft("add", "counter", "inet", "meshd_bench", k.name)
		rule := append([]string{"add", "rule", "inet", "meshd_bench", k.dir}, strings.Fields(k.match)...)
		h.nft(append(rule, "counter", "name", k.name, "accept")...)
	}
}

// linkCounts reads the counters of countLink: bytes on the link by kind,
// with an Ethernet header (14 bytes) per packet as `ip -s link` counts.
func linkCounts(t *testing.T, h *host) map[string]int64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "nft", "-j", "list", "counters", "table", "inet", "meshd_bench").Output()
	if err != nil {
		t.Fatalf("nft list counters: %v", err)
	}
	var list struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets int64  `json:"packets"`
				Bytes   int64  `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("nft -j list counters: %v in %s", err, out)
	}
	m := make(map[string]int64)
	for _, e := range list.Nftables {
		if c := e.Counter; c != nil {
			m[c.Name] = c.Bytes + 14*c.Packets
		}
	}
	return m
}

// daemonCounters is the sum of the named counters over hosts.
func daemonCounters(ctx context.Context, t *testing.T, hosts []*host, names ...string) map[string]int64 {
	t.Helper()
	m := make(map[string]int64)
	for _, h := range hosts {
		st, err := h.client().Status(ctx)
		if err != nil {
			t.Fatalf("%s: status: %v", h.name, err)
		}
		for _, n := range names {
			m[n] += st.Counters[n]
		}
	}
	return m
}

// shardKinds are the host's counters of multicast bytes by what they
// carried.
var shardKinds = []string{"data_bytes_sent", "parity_bytes_sent", "repair_bytes_sent", "heartbeat_bytes_sent"}

// linkBreakdown says where the host's link bytes went, per payload byte:
// each kind of linkKinds, and the data sent split by the host's counters
// (its packets are shards of about one size, so the split of their bytes
// is the split of the link's).
func linkBreakdown(link, shards map[string]int64, nackBytes, payload int64) string {
	p := float64(payload)
	var b strings.Builder
	var sum int64
	for _, k := range linkKinds {
		sum += link[k.name]
	}
	fmt.Fprintf(&b, "link bytes per payload byte %.3f:", float64(sum)/p)
	var sent int64
	for _, k := range shardKinds {
		sent += shards[k]
	}
	for _, k := range linkKinds {
		fmt.Fprintf(&b, " %s %.3f", k.name, float64(link[k.name])/p)
		if k.name == "data_out" && sent > 0 {
			b.WriteString(" (")
			for i, s := range shardKinds {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%s %.3f", strings.TrimSuffix(s, "_bytes_sent"), float64(link[k.name])*float64(shards[s])/float64(sent)/p)
			}
			b.WriteString(")")
		}
		if k.name == "data_in" {
			fmt.Fprintf(&b, " (NACK payload %.4f)", float64(nackBytes)/p)
		}
		b.WriteString(";")
	}
	return b.String()
}
