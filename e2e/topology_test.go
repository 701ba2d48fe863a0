package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// topology is several LANs joined by routers: each router is a namespace
// with one veth on each of its LANs, forwarding unicast between them, and
// each host has a route to every other LAN through the router on the
// shortest way there. Multicast stops at the routers unless
// forwardMulticast turns it on for a router.
type topology struct {
	t       *testing.T
	lans    []*lan
	routers []*router
}

// router is a router namespace. It is a host too, so that a test may run
// meshd on it: its eth<i> is on lans[i], with addrs[i].
type router struct {
	*host
	index int // in the topology, from 0
	lans  []*lan
	addrs []netip.Addr
}

// attach gives r a veth on l, its next eth<i>, and adds it to the
// discovery interfaces of the meshd r may run. It adds no routes: called
// after newTopology, it is a link coming up at run time.
func (r *router) attach(l *lan) {
	r.t.Helper()
	ifname := fmt.Sprintf("eth%d", len(r.lans))
	// Routers take addresses from the top of each LAN's /24, hosts from
	// the bottom.
	addr := netip.AddrFrom4([4]byte{10, 77, byte(l.subnet), byte(254 - r.index)})
	peer := fmt.Sprintf("r%d", r.index+1)
	for _, s := range [][]string{
		{"-n", r.ns, "link", "add", ifname, "type", "veth", "peer", "name", peer, "netns", l.bridge},
		{"-n", l.bridge, "link", "set", peer, "master", "br0", "up"},
		{"-n", r.ns, "addr", "add", addr.String() + "/24", "dev", ifname},
		{"-n", r.ns, "link", "set", ifname, "up"},
	} {
		if err := ip(s...); err != nil {
			r.t.Fatal(err)
		}
	}
	r.lans = append(r.lans, l)
	r.addrs = append(r.addrs, addr)
	r.addr = r.addrs[0]
	var ifaces []string
	for i := range r.lans {
		ifaces = append(ifaces, fmt.Sprintf("\"eth%d\"", i))
	}
	r.interfaces = "[" + strings.Join(ifaces, ", ") + "]"
}

// newChain makes n routers in a line: LAN 0, router 1, LAN 1, router 2,
// ..., LAN n. A host on LAN 0 is k routers away from a host on LAN k.
func newChain(t *testing.T, n int) *topology {
	t.Helper()
	links := make([][]int, n)
	for i := range links {
		links[i] = []int{i, i + 1}
	}
	return newTopology(t, n+1, links...)
}

// newTopology makes nLANs LANs and one router per entry of links, joined to
// the LANs it lists.
func newTopology(t *testing.T, nLANs int, links ...[]int) *topology {
	t.Helper()
	tp := &topology{t: t}
	for range nLANs {
		tp.lans = append(tp.lans, newLAN(t))
	}
	for k, on := range links {
		name := fmt.Sprintf("r%d", k+1)
		r := &router{host: &host{t: t, name: name, ns: addNamespace(t, name), dir: t.TempDir()}, index: k}
		r.socket = filepath.Join(r.dir, "meshd.sock")
		r.log = filepath.Join(r.dir, "meshd.log")
		for _, li := range on {
			r.attach(tp.lans[li])
		}
		r.sysctl("net.ipv4.ip_forward=1")
		tp.routers = append(tp.routers, r)
	}
	// Each router reaches the LANs it is not on through its neighbours.
	for _, r := range tp.routers {
		for d, l := range tp.lans {
			if r.on(l) {
				continue
			}
			best := -1
			var via netip.Addr
			for _, s := range r.lans {
				if hop, dist := tp.nextHop(tp.index(s), d, r); hop.IsValid() && (best < 0 || dist < best) {
					best, via = dist, hop
				}
			}
			// A LAN out of reach gets no route.
			if via.IsValid() {
				tp.route(r.ns, l, via)
			}
		}
	}
	return tp
}

func (r *router) on(l *lan) bool {
	for _, x := range r.lans {
		if x == l {
			return true
		}
	}
	return false
}

func (r *router) addrOn(l *lan) netip.Addr {
	for i, x := range r.lans {
		if x == l {
			return r.addrs[i]
		}
	}
	return netip.Addr{}
}

func (tp *topology) index(l *lan) int {
	for i, x := range tp.lans {
		if x == l {
			return i
		}
	}
	tp.t.Fatal("LAN not in the topology")
	return -1
}

// distances returns, for every LAN, how many routers a packet from LAN
// from crosses to reach it (-1: no way), not going through router skip.
func (tp *topology) distances(from int, skip *router) []int {
	dist := make([]int, len(tp.lans))
	for i := range dist {
		dist[i] = -1
	}
	dist[from] = 0
	queue := []int{from}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, r := range tp.routers {
			if r == skip || !r.on(tp.lans[s]) {
				continue
			}
			for _, l := range r.lans {
				if i := tp.index(l); dist[i] < 0 {
					dist[i] = dist[s] + 1
					queue = append(queue, i)
				}
			}
		}
	}
	return dist
}

// nextHop returns the address, on LAN s, of the first router on a shortest
// way from LAN s to LAN d (not router skip), and how many routers that way
// crosses.
func (tp *topology) nextHop(s, d int, skip *router) (netip.Addr, int) {
	if s == d {
		return netip.Addr{}, -1
	}
	bestDist := -1
	var hop netip.Addr
	for _, r := range tp.routers {
		if r == skip || !r.on(tp.lans[s]) {
			continue
		}
		for _, l := range r.lans {
			dist := tp.distances(tp.index(l), skip)[d]
			if dist >= 0 && (bestDist < 0 || dist+1 < bestDist) {
				bestDist, hop = dist+1, r.addrOn(tp.lans[s])
			}
		}
	}
	return hop, bestDist
}

func (tp *topology) route(ns string, to *lan, via netip.Addr) {
	tp.t.Helper()
	dst := fmt.Sprintf("10.77.%d.0/24", to.subnet)
	if err := ip("-n", ns, "route", "add", dst, "via", via.String()); err != nil {
		tp.t.Fatal(err)
	}
}

// addHost adds a host to LAN i, with routes to every other LAN.
func (tp *topology) addHost(i int, name string) *host {
	tp.t.Helper()
	h := tp.lans[i].addHost(name)
	for d, l := range tp.lans {
		if d == i {
			continue
		}
		// A LAN out of reach gets no route.
		if via, _ := tp.nextHop(i, d, nil); via.IsValid() {
			tp.route(h.ns, l, via)
		}
	}
	return h
}

func (h *host) sysctl(setting string) {
	h.t.Helper()
	if out, err := runIn(h.ns, "sysctl", "-qw", setting); err != nil {
		h.t.Fatalf("%s: sysctl %s: %v: %s", h.name, setting, err, out)
	}
}

// forwardMulticast makes r forward multicast to groups between all its
// LANs, as a multicast router does: a packet arriving with IP TTL t > 1 goes
// out on every other LAN with TTL t-1, and one with TTL 1 goes no further,
// so that a sender's TTL bounds how many routers its packets cross.
//
// The kernel does the forwarding, but not through its multicast routing
// table: the development machines' kernels (and so perhaps CI's) are built
// without CONFIG_IP_MROUTE, so a multicast routing daemon such as smcroute
// cannot install routes there. Instead an nftables ingress hook on each interface
// decrements the TTL and duplicates the packet onto the other interfaces.
// Routers are in a line or tree in the tests that use this: it does no
// reverse-path check, so a loop of routers would circulate each packet
// until its TTL ran out.
func (r *router) forwardMulticast(groups ...string) {
	r.t.Helper()
	var b strings.Builder
	b.WriteString("table netdev meshd_mroute {\n")
	for i := range r.lans {
		fmt.Fprintf(&b, "chain in%d {\ntype filter hook ingress device \"eth%d\" priority 0; policy accept;\n", i, i)
		fmt.Fprintf(&b, "ip daddr { %s } jump fwd%d\n}\n", strings.Join(groups, ", "), i)
		fmt.Fprintf(&b, "chain fwd%d {\n", i)
		// nft has no arithmetic on packet fields: one rule per TTL.
		for ttl := 2; ttl <= 255; ttl++ {
			fmt.Fprintf(&b, "ip ttl %d ip ttl set %d", ttl, ttl-1)
			for o := range r.lans {
				if o != i {
					fmt.Fprintf(&b, " dup to \"eth%d\"", o)
				}
			}
			b.WriteString(" accept\n")
		}
		b.WriteString("}\n")
	}
	b.WriteString("}\n")
	cmd := cmdIn(r.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("%s: nft: %v: %s", r.name, err, out)
	}
}

// cmdIn makes a command that runs inside namespace ns and is killed if this
// process dies.
func cmdIn(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func runIn(ns, name string, args ...string) ([]byte, error) {
	return cmdIn(ns, name, args...).CombinedOutput()
}
