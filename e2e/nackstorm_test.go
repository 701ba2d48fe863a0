package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
	"meshd/rooms/wire"
)

// nackStorm, run in a member's namespace, waits on eth0 for a NACK that
// the member's own daemon multicasts to MESHD_STORM_GROUP (source address
// MESHD_STORM_SELF), prints "captured", and, once a line arrives on
// standard input, multicasts that NACK again MESHD_STORM_RATE times a
// second for MESHD_STORM_FOR, then prints how many it sent.
//
// The NACK is the member's real one, sealed under the room's key with its
// key id, session and counter, so the host opens it: the storm meets the
// replay window, after authentication and before the member's NACK limit.
func nackStorm() error {
	group, err := netip.ParseAddrPort(os.Getenv("MESHD_STORM_GROUP"))
	if err != nil {
		return fmt.Errorf("MESHD_STORM_GROUP: %w", err)
	}
	self, err := netip.ParseAddr(os.Getenv("MESHD_STORM_SELF"))
	if err != nil {
		return fmt.Errorf("MESHD_STORM_SELF: %w", err)
	}
	rate, err := strconv.Atoi(os.Getenv("MESHD_STORM_RATE"))
	if err != nil {
		return fmt.Errorf("MESHD_STORM_RATE: %w", err)
	}
	dur, err := time.ParseDuration(os.Getenv("MESHD_STORM_FOR"))
	if err != nil {
		return fmt.Errorf("MESHD_STORM_FOR: %w", err)
	}
	c, err := listenGroup(group)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 65536)
	var nack []byte
	for nack == nil {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			c.Close()
			return fmt.Errorf("no NACK from %v: %w", self, err)
		}
		if typ, err := wire.PacketType(buf[:n]); err == nil && typ == wire.TypeNack && from.Addr().Unmap() == self {
			nack = append([]byte(nil), buf[:n]...)
		}
	}
	c.Close()
	fmt.Println("captured")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	out, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(group))
	if err != nil {
		return err
	}
	defer out.Close()
	// Paced by the clock, not by sleeps, which are coarse; a helper the
	// machine stalls catches up, so the storm always has all its copies.
	total := int(dur.Seconds() * float64(rate))
	start, sent := time.Now(), 0
	for sent < total {
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		for ; sent < due; sent++ {
			if _, err := out.Write(nack); err != nil {
				return err
			}
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("sent", sent)
	return nil
}

// TestNackStorm: one member's NACK, replayed 10,000 times a second from
// its namespace, does not slow the room for the others, nor use up that
// member's repair budget. The host opens every copy and drops it as
// replayed (its counter was seen) before the member's rate limit, so
// nothing is dropped over the member's rate; the other members get every
// line, in order. Delivery times with and without the storm are logged
// for docs/BENCHMARKS.md, not asserted.
func TestNackStorm(t *testing.T) {
	requireE2E(t)
	requireNft(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRoom(t, ctx, 3, "")
	storm, others := r.members[0], r.members[1:]
	var rs []ctl.Room
	r.host.ctlJSON(&rs, "rooms")
	group := findRoom(rs, "general").Group

	// Capture a real NACK of the storm member: lose some of the host's
	// multicast on its link until it asks for a repair.
	const rate, stormFor = 10000, 8 * time.Second
	helper := storm.helper(ctx, "nackstorm", "MESHD_STORM_GROUP="+group, "MESHD_STORM_SELF="+storm.addr.String(),
		"MESHD_STORM_RATE="+strconv.Itoa(rate), "MESHD_STORM_FOR="+stormFor.String())
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		helper.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	expectLine := func(prefix string) string {
		t.Helper()
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), prefix) {
			t.Fatalf("storm helper printed %q, want %q (%v)", lines.Text(), prefix, lines.Err())
		}
		return lines.Text()
	}
	expectLine("listening")
	storm.dropInput("ip saddr "+r.host.addr.String()+" ip daddr 224.0.0.0/4", 30)
	s := &sender{accepted: make(map[uint64]string)}
	captured := make(chan bool, 1)
	go func() { captured <- lines.Scan() && lines.Text() == "captured" }()
	for done := false; !done; {
		s.say(ctx, r.host, "general", 5, 0)
		select {
		case ok := <-captured:
			if !ok {
				t.Fatalf("storm helper did not capture a NACK: %q %v", lines.Text(), lines.Err())
			}
			done = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	storm.dropInput("", 0)
	r.expectAll(s, 30*time.Second)

	// Delivery times to the other members, without the storm, then with.
	const n = 200
	measure := func() []time.Duration {
		said := make(map[uint64]time.Time, n)
		var first, last uint64
		for i := range n {
			at := time.Now()
			res, err := r.host.client().Say(ctx, "general", ctl.SayRequest{Text: fmt.Sprintf("timed %d", i)})
			if err != nil {
				t.Fatal(err)
			}
			said[res.Seq] = at
			s.mu.Lock()
			s.accepted[res.Seq] = fmt.Sprintf("timed %d", i)
			s.mu.Unlock()
			if i == 0 {
				first = res.Seq
			}
			last = res.Seq
			time.Sleep(20 * time.Millisecond)
		}
		var out []time.Duration
		for _, v := range r.views[1:] {
			v.waitFor(last, 30*time.Second)
			v.mu.Lock()
			for seq := first; seq <= last; seq++ {
				if at, ok := v.at[seq]; ok && !said[seq].IsZero() {
					out = append(out, at.Sub(said[seq]))
				}
			}
			v.mu.Unlock()
		}
		slices.Sort(out)
		return out
	}
	quiet := measure()

	before := counters(r.host)
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		t.Fatal(err)
	}
	stormStart := time.Now()
	stormy := measure()
	sentLine := expectLine("sent")
	stormTook := time.Since(stormStart)
	after := counters(r.host)
	var sent int64
	fmt.Sscanf(sentLine, "sent %d", &sent)

	// Every line reached the others, in order, nothing declared lost.
	accepted, _ := s.snapshot()
	for _, v := range r.views[1:] {
		v.check(accepted)
	}
	limited := after["nack_limited"] - before["nack_limited"]
	acted := after["nacks_received"] - before["nacks_received"]
	replayed := after["nack_replayed"] - before["nack_replayed"]
	heard := replayed + limited + acted + (after["data_bad_epoch"] - before["data_bad_epoch"])
	t.Logf("storm: %d NACKs sent in %v; the host heard %d, dropped %d as replayed, %d over the member's rate, acted on %d; repairs sent %d",
		sent, stormFor, heard, replayed, limited, acted, after["repairs_sent"]-before["repairs_sent"])
	t.Logf("delivery to %d other members, %d lines each: without the storm %s; with it %s",
		len(others), n, summary(quiet), summary(stormy))
	if replayed < sent/2 {
		t.Errorf("the host dropped %d of %d NACKs as replayed, want most", replayed, sent)
	}
	// What the host heard besides the copies is the member's own NACKs,
	// if its link lost anything meanwhile: a few, within its budget.
	if other := heard - replayed; other > 20 {
		t.Errorf("of %d NACKs the host heard, %d were not dropped as replayed, want the storm's all", heard, other)
	}
	// The copies were not charged to the member: none of its NACKs was
	// over its rate (a burst of 20, then 50 a second).
	if limited != 0 {
		t.Errorf("the host dropped %d NACKs over the member's rate during the storm, want 0", limited)
	}
	if max := int64(20 + 50*(stormTook.Seconds()+1)); acted > max {
		t.Errorf("the host acted on %d NACKs in %v, more than the member's rate allows (%d)", acted, stormTook, max)
	}
	if len(stormy) != len(others)*n || len(quiet) != len(others)*n {
		t.Errorf("timed %d and %d deliveries, want %d each", len(quiet), len(stormy), len(others)*n)
	}
}

// summary gives the median, 95th percentile and maximum of sorted ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("median %v, p95 %v, max %v", q(0.5), q(0.95), ds[len(ds)-1].Round(100*time.Microsecond))
}
