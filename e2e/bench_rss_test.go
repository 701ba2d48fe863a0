package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms"
)

// TestBenchRSS measures the memory of a daemon hosting 10 rooms of 50
// members each (the budget: 16 MB of RSS). The 500 members are
// rooms.Join clients in one helper process, not 500 daemons; they take the
// room over their sessions (path tcp), the heavier case for the host.
// MESHD_BENCH only, like TestBench:
//
//	sudo MESHD_BENCH=1 go test -count=1 -run TestBenchRSS -v ./e2e
func TestBenchRSS(t *testing.T) {
	requireBench(t)
	const (
		nRooms   = 10
		nMembers = 50
		lines    = 100 // per room, once everyone has joined
		// The host admits 10 joins at once from one address, then 5 a
		// second: the helper spreads its members over this many.
		sources = 50
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLAN(t)
	hst, crowd := l.addHost("host"), l.addHost("crowd")
	cfg := "\n[host]\nmember_rate = 0\n"
	for i := range nRooms {
		cfg += fmt.Sprintf("\n[[room]]\nname = \"room%d\"\n", i)
	}
	// The daemon's memory_limit, for comparing limits; its default if
	// unset.
	top := ""
	if v := os.Getenv("MESHD_BENCH_MEMORY_LIMIT"); v != "" {
		top = fmt.Sprintf("memory_limit = %q\n", v)
	}
	hst.startTOML(top, cfg)
	var srcs []string
	for i := range sources {
		a := netip.AddrFrom4([4]byte{10, 77, byte(l.subnet), byte(100 + i)})
		if err := ip("-n", crowd.ns, "addr", "add", a.String()+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, a.String())
	}
	rs, err := hst.client().Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var spec []rssRoom
	for _, r := range rs {
		if r.Hosted {
			spec = append(spec, rssRoom{Name: r.Name, HostKey: r.HostKey, Addrs: r.Addrs, Group: r.Group})
		}
	}
	if len(spec) != nRooms {
		t.Fatalf("host lists %d rooms, want %d", len(spec), nRooms)
	}
	specJSON, _ := json.Marshal(spec)
	before, cpu := rssKiB(t, hst.cmd.Process.Pid), procCPU(t, hst.cmd.Process.Pid)
	logMemory(t, "before the joins", hst)
	if dir := os.Getenv("MESHD_BENCH_PPROF"); dir != "" {
		if err := saveProfile(hst.socket, "heap", filepath.Join(dir, "rss-host-heap-idle.pprof")); err != nil {
			t.Error(err)
		}
		saveSmaps(t, hst, filepath.Join(dir, "rss-host-smaps-idle.txt"))
	}

	cmd := crowd.helper(ctx, "crowd", "MESHD_CROWD_ROOMS="+string(specJSON),
		fmt.Sprintf("MESHD_CROWD_MEMBERS=%d", nMembers), "MESHD_CROWD_SOURCES="+strings.Join(srcs, ","))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	joined := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "joined" {
				joined <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		joined <- fmt.Errorf("helper ended before every member joined: %v", sc.Err())
	}()
	select {
	case err := <-joined:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("members did not all join within 3 minutes")
	}

	pad := strings.Repeat("x", 190)
	for i := range nRooms {
		for j := range lines {
			if _, err := hst.client().Say(ctx, fmt.Sprintf("room%d", i), ctl.SayRequest{Text: fmt.Sprintf("%03d %s", j, pad)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every member holds every line: the host's who says so.
	for i := range nRooms {
		room := fmt.Sprintf("room%d", i)
		eventually(t, 60*time.Second, "every member of "+room+" to ack every line", func() bool {
			w, err := hst.client().Who(ctx, room)
			if err != nil || len(w.Members) != nMembers+1 {
				return false
			}
			for _, m := range w.Members {
				if m.Acked < w.Room.LastSeq {
					return false
				}
			}
			return true
		})
	}
	after, cpu := rssKiB(t, hst.cmd.Process.Pid), procCPU(t, hst.cmd.Process.Pid)-cpu
	logMemory(t, "after", hst)
	if dir := os.Getenv("MESHD_BENCH_PPROF"); dir != "" {
		if err := saveProfile(hst.socket, "heap", filepath.Join(dir, "rss-host-heap.pprof")); err != nil {
			t.Error(err)
		}
	}
	st, err := hst.client().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host of %d rooms x %d members (path tcp), %d lines each: RSS %.1f MiB before the joins, %.1f MiB after; host CPU %v for the joins and lines; Go heap %.1f MiB, from the OS %.1f MiB, %d goroutines",
		nRooms, nMembers, lines, float64(before)/1024, float64(after)/1024, cpu,
		float64(st.Memory.HeapBytes)/(1<<20), float64(st.Memory.SysBytes)/(1<<20), st.Memory.Goroutines)

	// Then the rooms are quiet, their members idle (each acks once a
	// second): a busy host's usual state. Not a wait for an event but the
	// span measured, past the 5 s after which a quiet room lets go of the
	// blocks it kept for repairs.
	const quiet = 10 * time.Second
	cpu = procCPU(t, hst.cmd.Process.Pid)
	if dir := os.Getenv("MESHD_BENCH_PPROF"); dir != "" {
		// The quiet span is the CPU profile's (the profiler's own CPU
		// counts in the figure).
		if err := saveProfile(hst.socket, fmt.Sprintf("profile?seconds=%d", int(quiet/time.Second)), filepath.Join(dir, "rss-host-cpu-quiet.pprof")); err != nil {
			t.Error(err)
		}
	} else {
		time.Sleep(quiet)
	}
	idle, cpu := rssKiB(t, hst.cmd.Process.Pid), procCPU(t, hst.cmd.Process.Pid)-cpu
	logMemory(t, "quiet", hst)
	if dir := os.Getenv("MESHD_BENCH_PPROF"); dir != "" {
		if err := saveProfile(hst.socket, "heap", filepath.Join(dir, "rss-host-heap-quiet.pprof")); err != nil {
			t.Error(err)
		}
		saveSmaps(t, hst, filepath.Join(dir, "rss-host-smaps-quiet.txt"))
	}
	t.Logf("the same after %v quiet: RSS %.1f MiB; host CPU %v over the %v", quiet, float64(idle)/1024, cpu, quiet)
}

// logMemory logs where a daemon's memory is: its resident pages by kind
// (anonymous: heap and stacks; file: the binary's text and data), and the
// Go runtime's account of them (the MemStats that a heap profile's text
// form ends with).
func logMemory(t *testing.T, when string, h *host) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var line []string
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && (k == "RssAnon" || k == "RssFile" || k == "Threads") {
			line = append(line, k+" "+strings.Join(strings.Fields(v), " "))
		}
	}
	dir := t.TempDir()
	if err := saveProfile(h.socket, "heap?debug=1", filepath.Join(dir, "heap.txt")); err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "heap.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"HeapInuse": true, "HeapIdle": true, "HeapReleased": true, "Stack": true, "MSpan": true, "GCSys": true, "OtherSys": true, "Sys": true, "NextGC": true}
	for _, l := range strings.Split(string(txt), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "# "), " = ")
		if !ok || !want[k] {
			continue
		}
		// "Stack = 1245184 / 1245184": in use, then obtained from the OS.
		v, _, _ = strings.Cut(v, " ")
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			line = append(line, fmt.Sprintf("%s %.2f MiB", k, float64(n)/(1<<20)))
		}
	}
	t.Logf("memory %s: %s", when, strings.Join(line, ", "))
}

// saveSmaps saves the resident pages of each of h's mappings, for what
// the runtime's account does not split (its own structures, the binary's
// pages).
func saveSmaps(t *testing.T, h *host, path string) {
	t.Helper()
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", h.cmd.Process.Pid))
	if err == nil {
		err = os.WriteFile(path, smaps, 0o644)
	}
	if err != nil {
		t.Error(err)
	}
}

// rssRoom is what the crowd helper needs to join a room.
type rssRoom struct {
	Name    string   `json:"name"`
	HostKey string   `json:"host_key"`
	Addrs   []string `json:"addrs"`
	Group   string   `json:"group"`
}

// crowd joins MESHD_CROWD_MEMBERS members, each its own identity, to every
// room of MESHD_CROWD_ROOMS, on the session path, dialling from the
// addresses of MESHD_CROWD_SOURCES in turn; it prints "joined" once all
// are in, then keeps them until killed.
func crowd() error {
	var spec []rssRoom
	if err := json.Unmarshal([]byte(os.Getenv("MESHD_CROWD_ROOMS")), &spec); err != nil {
		return fmt.Errorf("MESHD_CROWD_ROOMS: %w", err)
	}
	n, err := strconv.Atoi(os.Getenv("MESHD_CROWD_MEMBERS"))
	if err != nil {
		return fmt.Errorf("MESHD_CROWD_MEMBERS: %w", err)
	}
	srcs := strings.Split(os.Getenv("MESHD_CROWD_SOURCES"), ",")
	var kns []rooms.Known
	for _, r := range spec {
		var kn rooms.Known
		key, err := hex.DecodeString(r.HostKey)
		if err != nil || len(key) != ed25519.PublicKeySize {
			return fmt.Errorf("host key %q", r.HostKey)
		}
		copy(kn.HostKey[:], key)
		kn.Room = r.Name
		if kn.Group, err = netip.ParseAddrPort(r.Group); err != nil {
			return err
		}
		for _, a := range r.Addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return err
			}
			kn.Addrs = append(kn.Addrs, ap)
		}
		kns = append(kns, kn)
	}
	var (
		mu      sync.Mutex
		members []*rooms.Member
		wg      sync.WaitGroup
		errs    = make(chan error, len(kns)*n)
	)
	quiet := slog.New(slog.DiscardHandler)
	for ri, kn := range kns {
		for i := range n {
			src := srcs[(ri*n+i)%len(srcs)]
			wg.Go(func() {
				_, key, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					errs <- err
					return
				}
				id, err := rooms.NewIdentity(key)
				if err != nil {
					errs <- err
					return
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				cfg := rooms.MemberConfig{
					Identity:  id,
					Stats:     new(rooms.Stats),
					Logger:    quiet,
					Deliver:   func(rooms.Delivery) {},
					JoinData:  func(netip.Addr) error { return nil },
					LeaveData: func(netip.Addr) {},
					Sender:    noSend{},
					Resolve:   func(string) (rooms.Known, error) { return kn, nil },
					Path:      rooms.PathTCP,
					Dial:      d.DialContext,
				}
				// Joins beyond the host's per-address rate are refused at
				// the door: try again.
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					m, err := rooms.Join(ctx, cfg, kn, fmt.Sprintf("m%d", i), 0, rooms.Credential{})
					cancel()
					if err == nil {
						mu.Lock()
						members = append(members, m)
						mu.Unlock()
						return
					}
					if try == 20 {
						errs <- fmt.Errorf("%s as m%d: %w", kn.Room, i, err)
						return
					}
					time.Sleep(time.Second)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Println("joined")
	// Kept until the test kills the process.
	select {}
}

// noSend drops a member's NACKs: the crowd's members are on TCP.
type noSend struct{}

func (noSend) WriteTo([]byte, netip.AddrPort) error { return nil }
