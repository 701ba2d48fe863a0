package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"meshd/ctl"
)

// Every namespace this process makes is named with this prefix and its
// pid, so that parallel runs never collide and a later run can tell the
// leftovers of a killed one.
var nsPrefix = fmt.Sprintf("mdt%d-", os.Getpid())

var namespaces struct {
	sync.Mutex
	names map[string]bool
	seq   int
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func addNamespace(t *testing.T, role string) string {
	t.Helper()
	namespaces.Lock()
	if namespaces.names == nil {
		namespaces.names = make(map[string]bool)
		removeStaleNamespaces()
	}
	namespaces.seq++
	name := fmt.Sprintf("%s%d-%s", nsPrefix, namespaces.seq, role)
	namespaces.names[name] = true
	namespaces.Unlock()
	if err := ip("netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNamespace(name) })
	if err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return name
}

func removeNamespace(name string) {
	namespaces.Lock()
	delete(namespaces.names, name)
	namespaces.Unlock()
	// Deleting a namespace takes its veths and bridge with it.
	exec.Command("ip", "netns", "delete", name).Run()
}

func removeAllNamespaces() {
	namespaces.Lock()
	names := make([]string, 0, len(namespaces.names))
	for n := range namespaces.names {
		names = append(names, n)
	}
	namespaces.Unlock()
	for _, n := range names {
		removeNamespace(n)
	}
}

// removeStaleNamespaces deletes namespaces left by runs whose process is
// gone (killed with SIGKILL, which no handler sees).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "mdt")
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "delete", name).Run()
		}
	}
}

// lan is one Ethernet segment: a bridge in its own namespace, and hosts,
// each a namespace with one veth to the bridge. Nothing touches the root
// namespace, so no traffic leaves the test's own hosts.
type lan struct {
	t      *testing.T
	bridge string // namespace holding the bridge
	hosts  []*host
	subnet int // third octet of 10.77.x.0/24
}

var lanSeq struct {
	sync.Mutex
	n int
}

func newLAN(t *testing.T) *lan {
	t.Helper()
	lanSeq.Lock()
	lanSeq.n++
	subnet := lanSeq.n
	lanSeq.Unlock()
	l := &lan{t: t, bridge: addNamespace(t, "br"), subnet: subnet}
	// Snooping off: with no IGMP querier on the segment, a snooping bridge
	// could hold back multicast that the hosts did join.
	if err := ip("-n", l.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		t.Fatal(err)
	}
	if err := ip("-n", l.bridge, "link", "set", "br0", "up"); err != nil {
		t.Fatal(err)
	}
	return l
}

// host is one machine on a lan, running one meshd.
type host struct {
	t      *testing.T
	name   string
	ns     string
	addr   netip.Addr
	dir    string
	socket string
	cmd    *exec.Cmd
	exited chan error
	log    string
	// interfaces is the TOML list of discovery interfaces; "" means eth0.
	interfaces string

	clientOnce sync.Once
	ctlClient  *ctl.Client
}

func (l *lan) addHost(name string) *host {
	t := l.t
	t.Helper()
	ns := addNamespace(t, name)
	i := len(l.hosts) + 1
	peer := fmt.Sprintf("v%d", i)
	addr := netip.AddrFrom4([4]byte{10, 77, byte(l.subnet), byte(i)})
	steps := [][]string{
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", l.bridge},
		{"-n", l.bridge, "link", "set", peer, "master", "br0", "up"},
		{"-n", ns, "addr", "add", addr.String() + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatal(err)
		}
	}
	h := &host{t: t, name: name, ns: ns, addr: addr, dir: t.TempDir()}
	h.socket = filepath.Join(h.dir, "meshd.sock")
	h.log = filepath.Join(h.dir, "meshd.log")
	l.hosts = append(l.hosts, h)
	return h
}

// start runs meshd on h with the base test configuration plus extra TOML,
// and returns once it has told its readiness the way systemd hears it.
func (h *host) start(extra string) {
	h.t.Helper()
	h.startTOML("", extra)
}

// startTOML is start with top-level keys too: top goes before the first
// table, extra after [discovery].
func (h *host) startTOML(top, extra string) {
	t := h.t
	t.Helper()
	cfg := fmt.Sprintf(`version = 1
state_dir = %q
socket = %q
nick = %q
log_level = "debug"
%s
[discovery]
announce_interval = "1s"
room_lifetime = "5s"
interfaces = %s
%s`, filepath.Join(h.dir, "state"), h.socket, h.name, top, cmp.Or(h.interfaces, `["eth0"]`), extra)
	cfgPath := filepath.Join(h.dir, "meshd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	notifyPath := filepath.Join(h.dir, "notify.sock")
	os.Remove(notifyPath)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	logf, err := os.OpenFile(h.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command("ip", "netns", "exec", h.ns, bins.meshd, "-config", cfgPath)
	// A race-enabled meshd would otherwise linger a second at exit.
	h.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "GORACE=atexit_sleep_ms=0")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	// Killed with this process, so that a test killed outright leaves no
	// daemon behind.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	cmd, exited := h.cmd, make(chan error, 1)
	h.exited = exited
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { h.stop() })

	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := notify.Read(buf)
		if err == nil && !bytes.Contains(buf[:n], []byte("READY=1")) {
			err = fmt.Errorf("notify: %q", buf[:n])
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%s: meshd did not become ready: %v\n%s", h.name, err, h.logTail())
		}
	case err := <-h.exited:
		h.exited <- err
		t.Fatalf("%s: meshd exited at start: %v\n%s", h.name, err, h.logTail())
	}
}

// stop sends SIGTERM and checks that meshd shut down cleanly.
func (h *host) stop() {
	t := h.t
	if h.cmd == nil {
		return
	}
	cmd := h.cmd
	h.cmd = nil
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.exited:
		if err != nil {
			t.Errorf("%s: meshd exited with %v after SIGTERM\n%s", h.name, err, h.logTail())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-h.exited
		t.Errorf("%s: meshd did not stop within 15s of SIGTERM\n%s", h.name, h.logTail())
	}
	if t.Failed() {
		t.Logf("%s log:\n%s", h.name, h.logTail())
	}
}

func (h *host) logTail() string {
	b, _ := os.ReadFile(h.log)
	const max = 6000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// ctl runs meshctl against h's daemon and returns its standard output.
func (h *host) ctl(args ...string) (string, error) {
	cmd := exec.Command(bins.meshctl, append([]string{"-socket", h.socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("meshctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (h *host) mustCtl(args ...string) string {
	h.t.Helper()
	out, err := h.ctl(args...)
	if err != nil {
		h.t.Fatalf("%s: %v", h.name, err)
	}
	return out
}

// ctlJSON runs meshctl with --json and decodes its output into v.
func (h *host) ctlJSON(v any, args ...string) {
	h.t.Helper()
	out := h.mustCtl(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		h.t.Fatalf("%s: meshctl %v: %v in %q", h.name, args, err, out)
	}
}

// inNS runs this test binary as a helper inside h's namespace.
func (h *host) helper(ctx context.Context, name string, env ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns, self, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+name), env...)
	return cmd
}

// eventually polls cond until it holds or the deadline passes. Used only
// for state with no event to wait on (another daemon's view).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nft runs nft inside h's namespace.
func (h *host) nft(args ...string) {
	h.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, "nft"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("%s: nft %s: %v: %s", h.name, strings.Join(args, " "), err, out)
	}
}

// dropInput makes h's namespace drop pct percent of the incoming packets
// that match (e.g. "ip daddr 224.0.0.0/4" for multicast, "" for all),
// at random, as a lossy radio link would. pct 0 removes the rule.
func (h *host) dropInput(match string, pct int) {
	h.t.Helper()
	exec.Command("ip", "netns", "exec", h.ns, "nft", "delete", "table", "inet", "meshd_test").Run()
	if pct == 0 {
		return
	}
	h.nft("add", "table", "inet", "meshd_test")
	h.nft("add", "chain", "inet", "meshd_test", "input", "{ type filter hook input priority 0 ; policy accept ; }")
	rule := []string{"add", "rule", "inet", "meshd_test", "input"}
	rule = append(rule, strings.Fields(match)...)
	if pct >= 100 {
		rule = append(rule, "drop")
	} else {
		rule = append(rule, "numgen", "random", "mod", "100", "<", strconv.Itoa(pct), "drop")
	}
	h.nft(rule...)
}

// kill stops h's meshd with SIGKILL, as a crash or a power cut of the
// process would.
func (h *host) kill() {
	h.t.Helper()
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.cmd = nil
}

// client returns a control API client of h's daemon.
// It is one client per host, so that the tests reuse its connections as
// a well-behaved front end would.
func (h *host) client() *ctl.Client {
	h.clientOnce.Do(func() { h.ctlClient = &ctl.Client{Socket: h.socket} })
	return h.ctlClient
}
