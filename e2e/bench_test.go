package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"meshd/ctl"
)

// The benchmark harness (issue "Fast and small"): a host and K members on
// a namespace bridge, a room driven through the host's control API, and
// what it cost. It runs only when asked, with MESHD_BENCH=1, because it
// takes minutes and its figures are for docs/BENCHMARKS.md, not
// assertions:
//
//	sudo MESHD_BENCH=1 go test -count=1 -run TestBench -v -timeout 60m ./e2e
//
// MESHD_BENCH_CASE="members=8 loss=10 cap=20 rate=0 count=5000 size=200"
// runs that one case instead of the standard ones; MESHD_BENCH_OUT=FILE
// also writes the table there; MESHD_BENCH_PPROF=DIR saves CPU profiles of
// the host and the first member over the first MESHD_BENCH_PPROF_SECONDS
// (default 5) of each run's workload, taken through the control API.

// benchCase is one workload. Every case runs twice: with the members on
// their default path (multicast) and with every member forced onto TCP.
type benchCase struct {
	name    string
	members int
	loss    int     // percent of multicast dropped at each member's input
	capMbit int     // tbf rate cap on the host's link; 0: none
	rate    float64 // lines a second; 0: as fast as the room accepts
	count   int     // lines said
	size    int     // bytes per line
}

// benchCases are the targets.
var benchCases = []benchCase{
	{name: "capacity-5", members: 16, loss: 5, capMbit: 20, count: 20000, size: 200},
	{name: "capacity-20", members: 16, loss: 20, capMbit: 20, count: 20000, size: 200},
	{name: "latency-0", members: 16, loss: 0, rate: 100, count: 1000, size: 200},
	{name: "latency-10", members: 16, loss: 10, rate: 100, count: 1000, size: 200},
	{name: "fanout-1", members: 1, rate: 1000, count: 5000, size: 200},
	{name: "fanout-32", members: 32, rate: 1000, count: 5000, size: 200},
	{name: "headroom", members: 4, loss: 5, count: 20000, size: 200},
}

// benchResult is what one run of a case measured.
type benchResult struct {
	benchCase
	path     string        // "multicast" or "tcp"
	elapsed  time.Duration // first say until the last member has the last line
	accepted int           // lines the host accepted
	failed   int           // says refused or failed
	// Say-to-delivery latency over every line at every member.
	p50, p99, pmax time.Duration
	// CPU microseconds per line accepted.
	hostCPU, memberCPU, memberCPUMax float64
	// Bytes on the host's link (both ways, Ethernet headers included) per
	// payload byte said.
	linkPerPayload float64
	hostRSS        int // KiB
	memberRSSMax   int // KiB
	switched       int // members that moved to their session during a multicast run
	problems       []string
}

func (r *benchResult) delivered() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.accepted) / r.elapsed.Seconds()
}

var benchResults struct {
	sync.Mutex
	list []benchResult
}

// requireBench skips the benchmarks unless MESHD_BENCH is set, whatever
// MESHD_E2E says, so that CI's e2e run stays fast.
func requireBench(t *testing.T) {
	t.Helper()
	if os.Getenv("MESHD_BENCH") == "" {
		t.Skip("benchmarks run only with MESHD_BENCH=1 (they take minutes; see docs/BENCHMARKS.md)")
	}
	requireE2E(t)
	requireNft(t)
	if _, err := exec.LookPath("tc"); err != nil {
		t.Fatal("the benchmarks need tc (iproute2) for the rate cap")
	}
}

func TestBench(t *testing.T) {
	requireBench(t)
	cases := benchCases
	if spec := os.Getenv("MESHD_BENCH_CASE"); spec != "" {
		c, err := parseBenchCase(spec)
		if err != nil {
			t.Fatalf("MESHD_BENCH_CASE: %v", err)
		}
		cases = []benchCase{c}
	}
	benchResults.Lock()
	benchResults.list = nil
	benchResults.Unlock()
	for _, c := range cases {
		for _, path := range []string{"multicast", "tcp"} {
			t.Run(c.name+"/"+path, func(t *testing.T) {
				r := runBench(t, c, path)
				t.Logf("%s", formatBenchRow(&r))
				benchResults.Lock()
				benchResults.list = append(benchResults.list, r)
				benchResults.Unlock()
			})
		}
	}
	benchResults.Lock()
	table := formatBenchTable(benchResults.list)
	benchResults.Unlock()
	t.Logf("\n%s", table)
	if out := os.Getenv("MESHD_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func parseBenchCase(spec string) (benchCase, error) {
	c := benchCase{name: "custom", members: 4, count: 5000, size: 200}
	for _, kv := range strings.Fields(spec) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("%q is not key=value", kv)
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return c, fmt.Errorf("%s: %w", k, err)
		}
		switch k {
		case "members":
			c.members = int(n)
		case "loss":
			c.loss = int(n)
		case "cap":
			c.capMbit = int(n)
		case "rate":
			c.rate = n
		case "count":
			c.count = int(n)
		case "size":
			c.size = int(n)
		default:
			return c, fmt.Errorf("unknown key %q (members, loss, cap, rate, count, size)", k)
		}
	}
	if c.members < 1 || c.count < 1 || c.size < 32 || c.size > 16<<10 {
		return c, errors.New("want members >= 1, count >= 1, 32 <= size <= 16384")
	}
	return c, nil
}

// benchHostConfig hosts "general" with history for every line of a run,
// so that a member on TCP or catching up finds them all in the log.
const benchHostConfig = `
[host]
history = 200000
member_rate = 0

[[room]]
name = "general"
`

func runBench(t *testing.T, c benchCase, path string) benchResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := benchResult{benchCase: c, path: path}

	l := newLAN(t)
	hst := l.addHost("host")
	var members []*host
	for i := range c.members {
		members = append(members, l.addHost(fmt.Sprintf("m%d", i+1)))
	}
	hst.start(benchHostConfig)
	memberCfg := ""
	if path == "tcp" {
		memberCfg = "\n[member]\npath = \"tcp\"\n"
	}
	for _, m := range members {
		m.start(memberCfg)
	}
	views := make([]*benchView, len(members))
	for i, m := range members {
		eventually(t, 15*time.Second, m.name+" to list general", func() bool {
			rs, err := m.client().Rooms(ctx)
			return err == nil && findRoom(rs, "general") != nil
		})
		if _, err := m.client().Join(ctx, ctl.JoinRequest{Room: "general", Nick: m.name}); err != nil {
			t.Fatalf("%s: join: %v", m.name, err)
		}
		views[i] = followBench(ctx, t, m)
	}
	for _, m := range members {
		eventually(t, 15*time.Second, m.name+" to be on "+path, func() bool { return pathOf(ctx, m, "general") == path })
	}
	// Every member has every join before the clock starts.
	rs, err := hst.client().Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := findRoom(rs, "general").LastSeq
	for _, v := range views {
		v.waitFor(t, joined, 30*time.Second)
	}

	// The impairments go on once the room is set up, so that every run
	// starts from the same state.
	for _, m := range members {
		m.dropInput("ip daddr 224.0.0.0/4", c.loss)
	}
	if c.capMbit > 0 {
		// A queue of 100 ms at the capped rate, like a radio's; the
		// sockets' send buffers push back on meshd before it overflows.
		out, err := exec.Command("ip", "netns", "exec", hst.ns, "tc", "qdisc", "add", "dev", "eth0", "root",
			"tbf", "rate", fmt.Sprintf("%dmbit", c.capMbit), "burst", "16kb", "latency", "100ms").CombinedOutput()
		if err != nil {
			t.Fatalf("tc: %v: %s", err, out)
		}
	}

	procs := append([]*host{hst}, members...)
	cpu0 := make([]time.Duration, len(procs))
	for i, p := range procs {
		cpu0[i] = procCPU(t, p.cmd.Process.Pid)
	}
	link0 := linkBytes(t, hst)
	countLink(hst)
	self0 := procCPU(t, os.Getpid())
	busy0, total0 := machineCPU(t)
	shards0 := daemonCounters(ctx, t, []*host{hst}, append(shardKinds, "says_waited", "nack_limited")...)
	nacks0 := daemonCounters(ctx, t, members, "nack_bytes_sent", "blocks_decoded", "data_fetched")

	profiled := profileRun(t, c.name+"-"+path, hst, members[0])
	start := time.Now()
	last, accepted, failed := driveRoom(ctx, t, hst, c)
	res.accepted, res.failed = accepted, failed
	within := 60*time.Second + time.Duration(c.count)*5*time.Millisecond
	for _, v := range views {
		if !v.reach(last, start.Add(within)) {
			res.problems = append(res.problems, fmt.Sprintf("%s reached #%d, not #%d, within %v", v.name, v.lastSeq(), last, within))
		}
	}
	var done time.Time
	for _, v := range views {
		v.mu.Lock()
		if v.lastAt.After(done) {
			done = v.lastAt
		}
		v.mu.Unlock()
	}
	res.elapsed = done.Sub(start)
	profiled()
	// What else ran: the harness itself (its sayers and its 16 event
	// streams) and the kernel share the machine with the daemons, and on
	// 2 cores a busy machine, not the link, can be what holds a room back.
	busy1, total1 := machineCPU(t)
	overflowed := 0
	for _, m := range members {
		overflowed += udpRcvbufErrors(t, m)
	}
	t.Logf("%s/%s: machine %.0f %% busy over the run, harness %.1f µs a line, link carried %.0f %% of its cap, members' sockets overflowed %d times", c.name, path,
		100*float64(busy1-busy0)/float64(max(total1-total0, 1)),
		float64((procCPU(t, os.Getpid())-self0).Microseconds())/float64(max(accepted, 1)),
		linkUse(t, hst, link0, res.elapsed, c.capMbit), overflowed)

	for i, p := range procs {
		used := procCPU(t, p.cmd.Process.Pid) - cpu0[i]
		perMsg := float64(used.Microseconds()) / float64(max(accepted, 1))
		if i == 0 {
			res.hostCPU = perMsg
			continue
		}
		res.memberCPU += perMsg / float64(len(members))
		res.memberCPUMax = max(res.memberCPUMax, perMsg)
	}
	res.linkPerPayload = float64(linkBytes(t, hst)-link0) / float64(accepted*c.size)
	shards := daemonCounters(ctx, t, []*host{hst}, append(shardKinds, "says_waited", "nack_limited")...)
	for k, v := range shards0 {
		shards[k] -= v
	}
	mc := daemonCounters(ctx, t, members, "nack_bytes_sent", "blocks_decoded", "data_fetched")
	blocks := float64(mc["blocks_decoded"]-nacks0["blocks_decoded"]) / float64(len(members))
	// Lines that waited for the host's link: the link, not the
	// machine's CPU, was what held the room back.
	waited, limited := shards["says_waited"], shards["nack_limited"]
	delete(shards, "says_waited")
	delete(shards, "nack_limited")
	t.Logf("%s/%s: %s %.1f lines per block, %.1f batches fetched per member, %d lines waited for the link, %d NACKs over members' rate", c.name, path,
		linkBreakdown(linkCounts(t, hst), shards, mc["nack_bytes_sent"]-nacks0["nack_bytes_sent"], int64(accepted*c.size)),
		float64(accepted)/max(blocks, 1), float64(mc["data_fetched"]-nacks0["data_fetched"])/float64(len(members)), waited, limited)
	res.hostRSS = rssKiB(t, hst.cmd.Process.Pid)
	for _, m := range members {
		res.memberRSSMax = max(res.memberRSSMax, rssKiB(t, m.cmd.Process.Pid))
	}

	// A member that left multicast for its session during a multicast
	// run (auto path: multicast too lossy or silent) makes the run part
	// TCP; the table must say so.
	if path == "multicast" {
		for _, m := range members {
			if st, err := m.client().Status(ctx); err == nil && st.Counters["stream_switches"] > 0 {
				res.switched++
			}
		}
	}
	var lat []time.Duration
	for _, v := range views {
		v.mu.Lock()
		lat = append(lat, v.lat...)
		if v.disorder > 0 {
			res.problems = append(res.problems, fmt.Sprintf("%s: %d lines out of order or missing", v.name, v.disorder))
		}
		if v.gaps > 0 {
			res.problems = append(res.problems, fmt.Sprintf("%s: %d gaps declared", v.name, v.gaps))
		}
		if v.missed > 0 {
			res.problems = append(res.problems, fmt.Sprintf("%s: its event stream missed %d lines (the harness resubscribed too late)", v.name, v.missed))
		}
		if v.overflows > 0 {
			res.problems = append(res.problems, fmt.Sprintf("%s: its event stream overflowed %d times", v.name, v.overflows))
		}
		v.mu.Unlock()
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		res.p50, res.p99, res.pmax = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
	}
	if failed > 0 {
		res.problems = append(res.problems, fmt.Sprintf("%d says failed", failed))
	}
	for _, p := range res.problems {
		t.Errorf("%s/%s: %s", c.name, path, p)
	}
	return res
}

// profileRun starts CPU profiles of hosts through their control API when
// MESHD_BENCH_PPROF names a directory; the function it returns waits for
// them.
func profileRun(t *testing.T, name string, hosts ...*host) func() {
	dir := os.Getenv("MESHD_BENCH_PPROF")
	if dir == "" {
		return func() {}
	}
	secs := os.Getenv("MESHD_BENCH_PPROF_SECONDS")
	if secs == "" {
		secs = "5"
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		path := filepath.Join(dir, name+"-"+h.name+".pprof")
		wg.Go(func() {
			if err := saveProfile(h.socket, "profile?seconds="+secs, path); err != nil {
				t.Errorf("profile of %s: %v", h.name, err)
			}
		})
	}
	return wg.Wait
}

// saveProfile saves GET /v0/debug/pprof/{profile} of the daemon at
// socket to path.
func saveProfile(socket, profile, path string) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Get("http://" + ctl.Host + "/v0/debug/pprof/" + profile)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return os.WriteFile(path, b, 0o644)
}

// driveRoom says c.count lines of c.size bytes through the host's control
// API, at c.rate or as fast as the room accepts them, and returns the
// highest sequence number accepted. Each line starts with the time it was
// said, in Unix nanoseconds, so that members' deliveries give latencies.
func driveRoom(ctx context.Context, t *testing.T, h *host, c benchCase) (last uint64, accepted, failed int) {
	// Each worker has its own client, and so its own kept-alive
	// connection: a say waits for its batch to be logged, so the room is
	// fed only as fast as many says are in flight at once. As fast as the
	// room accepts, each request says pasteLines lines (as a paste or a
	// relay does): with one line a request, the round trips of 56 says
	// on the harness's 2 cores, not the room, set the pace (about 8,000
	// lines a second, 80 % of the capped link).
	const workers = 56
	per := 1
	if c.rate == 0 {
		per = pasteLines
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next atomic.Int64
	)
	var tick <-chan struct{}
	if c.rate > 0 {
		ch := make(chan struct{}, c.count)
		tick = ch
		wg.Go(func() {
			defer close(ch)
			start := time.Now()
			for i := range c.count {
				at := start.Add(time.Duration(float64(i) / c.rate * float64(time.Second)))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				ch <- struct{}{}
			}
		})
	}
	pad := strings.Repeat("x", c.size)
	for range workers {
		cl := &ctl.Client{Socket: h.socket}
		wg.Go(func() {
			lines := make([]string, 0, per)
			for {
				end := next.Add(int64(per))
				start := end - int64(per)
				if start >= int64(c.count) {
					return
				}
				n := int(min(end, int64(c.count)) - start)
				if tick != nil {
					if _, ok := <-tick; !ok {
						return
					}
				}
				lines = lines[:0]
				for range n {
					text := strconv.FormatInt(time.Now().UnixNano(), 10) + " "
					lines = append(lines, text+pad[:c.size-len(text)])
				}
				req := ctl.SayRequest{Text: lines[0]}
				if per > 1 {
					req = ctl.SayRequest{Lines: lines}
				}
				res, err := cl.Say(ctx, "general", req)
				mu.Lock()
				if err != nil {
					failed += n
					if failed == n {
						t.Logf("say: %v", err)
					}
				} else {
					accepted += n
					last = max(last, res.Seq, res.Last)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return last, accepted, failed
}

// pasteLines is how many lines a request says when the harness drives a
// room as fast as it accepts them.
const pasteLines = 8

// benchView follows one member's event stream: the sequence it has
// reached, lines out of order, and each line's latency.
type benchView struct {
	name      string
	mu        sync.Mutex
	last      uint64
	lastAt    time.Time
	lat       []time.Duration
	disorder  int
	gaps      int
	overflows int
	missed    int
	wake      chan struct{}
}

func followBench(ctx context.Context, t *testing.T, h *host) *benchView {
	v := &benchView{name: h.name, wake: make(chan struct{}, 1)}
	c := &ctl.Client{Socket: h.socket}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			v.follow(ctx, c)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { <-done })
	return v
}

func (v *benchView) follow(ctx context.Context, c *ctl.Client) {
	v.mu.Lock()
	since := v.last
	v.mu.Unlock()
	stream, err := c.Events(ctx, "general", since, true)
	if err != nil {
		return
	}
	defer stream.Close()
	for {
		ev, err := stream.Next()
		now := time.Now()
		if err != nil {
			return // resubscribed by followBench unless ctx is done
		}
		v.mu.Lock()
		switch ev.Kind {
		case ctl.EventOverflow:
			v.overflows++
		case ctl.EventGap:
			v.gaps++
		case ctl.EventMissed:
			// The harness read too slowly for the member's backlog: its
			// own loss, not the room's, but the run cannot check them.
			if ev.Seq > v.last {
				v.missed += int(ev.Through - ev.Seq + 1)
				v.last = ev.Through
			}
		case ctl.EventMessage, ctl.EventJoin, ctl.EventPart:
			if ev.Seq <= v.last {
				break // the backlog of a resubscription
			}
			if v.last != 0 && ev.Seq != v.last+1 {
				v.disorder++
			}
			v.last, v.lastAt = ev.Seq, now
			if ev.Kind == ctl.EventMessage {
				stamp, _, _ := strings.Cut(ev.Text, " ")
				if ns, err := strconv.ParseInt(stamp, 10, 64); err == nil {
					v.lat = append(v.lat, now.Sub(time.Unix(0, ns)))
				}
			}
		}
		v.mu.Unlock()
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

func (v *benchView) lastSeq() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last
}

// reach waits until the view has seq, or the deadline; it reports which.
func (v *benchView) reach(seq uint64, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for v.lastSeq() < seq {
		select {
		case <-v.wake:
		case <-timer.C:
			return v.lastSeq() >= seq
		}
	}
	return true
}

func (v *benchView) waitFor(t *testing.T, seq uint64, within time.Duration) {
	t.Helper()
	if !v.reach(seq, time.Now().Add(within)) {
		t.Fatalf("%s reached #%d, not #%d, within %v", v.name, v.lastSeq(), seq, within)
	}
}

// procCPU is the user and system CPU time a process has used, all its
// threads together, from /proc/PID/stat (in clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name may hold spaces; the fields after it do not.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * tick
}

// machineCPU returns the jiffies all CPUs spent busy (user, system,
// interrupts) and in all, from /proc/stat.
func machineCPU(t *testing.T) (busy, total int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("/proc/stat: %q", line)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// udpRcvbufErrors is how many datagrams h's sockets dropped for want of
// room in their receive buffers since its namespace was made: loss the
// member's daemon caused by falling behind, on top of the nftables rule's.
func udpRcvbufErrors(t *testing.T, h *host) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("/proc/net/snmp in %s: %v", h.ns, err)
	}
	// Two "Udp:" lines: the field names, then the values.
	var names, values []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "Udp:" {
			if names == nil {
				names = f
			} else {
				values = f
			}
		}
	}
	for i, name := range names {
		if name == "RcvbufErrors" && i < len(values) {
			n, _ := strconv.Atoi(values[i])
			return n
		}
	}
	t.Fatalf("/proc/net/snmp in %s has no Udp RcvbufErrors: %s", h.ns, out)
	return 0
}

// linkUse is the share, in percent, of a link capped at capMbit that h's
// eth0 sent since it had sent link0 bytes, elapsed ago; 0 with no cap.
func linkUse(t *testing.T, h *host, link0 int64, elapsed time.Duration, capMbit int) float64 {
	if capMbit == 0 || elapsed <= 0 {
		return 0
	}
	return 100 * float64(linkBytes(t, h)-link0) * 8 / (float64(capMbit) * 1e6 * elapsed.Seconds())
}

// linkBytes is how many bytes h's eth0 has sent and received.
func linkBytes(t *testing.T, h *host) int64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", h.ns, "-s", "-j", "link", "show", "dev", "eth0").Output()
	if err != nil {
		t.Fatalf("ip -s link: %v", err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Bytes int64 } `json:"rx"`
			TX struct{ Bytes int64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v in %s", err, out)
	}
	return links[0].Stats.RX.Bytes + links[0].Stats.TX.Bytes
}

func formatBenchRow(r *benchResult) string {
	path := r.path
	if r.switched > 0 {
		path = fmt.Sprintf("%s (%d fell back to tcp)", path, r.switched)
	}
	return fmt.Sprintf("| %s | %s | %d | %d %% | %s | %s | %d | %.0f | %.2f s | %s / %s / %s | %.0f | %.1f (max %.1f) | %.2f | %.1f / %.1f |",
		r.name, path, r.members, r.loss, capString(r.capMbit), rateString(r.rate), r.accepted, r.delivered(), r.elapsed.Seconds(),
		ms(r.p50), ms(r.p99), ms(r.pmax), r.hostCPU, r.memberCPU, r.memberCPUMax, r.linkPerPayload,
		float64(r.hostRSS)/1024, float64(r.memberRSSMax)/1024)
}

func capString(mbit int) string {
	if mbit == 0 {
		return "none"
	}
	return fmt.Sprintf("%d Mbit/s", mbit)
}

func rateString(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%g/s", r)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// formatBenchTable is the results as Markdown, then, for each case, how
// multicast compares with TCP fan-out.
func formatBenchTable(rs []benchResult) string {
	var b strings.Builder
	b.WriteString("| case | path | members | loss | cap | rate | lines | delivered/s | last line at all members | latency p50 / p99 / max ms | host CPU µs/line | member CPU µs/line | link bytes / payload byte | RSS host / member max MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range rs {
		b.WriteString(formatBenchRow(&rs[i]) + "\n")
	}
	b.WriteString("\n| case | multicast / TCP: time | host CPU | link bytes |\n|---|---|---|---|\n")
	for i := range rs {
		if rs[i].path != "multicast" {
			continue
		}
		for j := range rs {
			if rs[j].path == "tcp" && rs[j].name == rs[i].name {
				fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |\n", rs[i].name,
					rs[i].elapsed.Seconds()/rs[j].elapsed.Seconds(), rs[i].hostCPU/rs[j].hostCPU, rs[i].linkPerPayload/rs[j].linkPerPayload)
			}
		}
	}
	return b.String()
}
