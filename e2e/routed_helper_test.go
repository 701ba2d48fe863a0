package e2e

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// send, a helper, sends crafted datagrams from inside a namespace:
// MESHD_SEND_HEX, a comma-separated list of packets in hex, to
// MESHD_SEND_TO (a multicast group or a unicast address, with port), in
// order, 20 ms apart, MESHD_SEND_ROUNDS times. It prints "sent" when done.
func send() error {
	to, err := netip.ParseAddrPort(os.Getenv("MESHD_SEND_TO"))
	if err != nil {
		return fmt.Errorf("MESHD_SEND_TO: %w", err)
	}
	var pkts [][]byte
	for _, h := range strings.Split(os.Getenv("MESHD_SEND_HEX"), ",") {
		b, err := hex.DecodeString(h)
		if err != nil {
			return fmt.Errorf("MESHD_SEND_HEX: %w", err)
		}
		pkts = append(pkts, b)
	}
	rounds, err := strconv.Atoi(os.Getenv("MESHD_SEND_ROUNDS"))
	if err != nil {
		return fmt.Errorf("MESHD_SEND_ROUNDS: %w", err)
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return err
	}
	defer c.Close()
	for range rounds {
		for _, p := range pkts {
			if _, err := c.Write(p); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Println("sent")
	return nil
}

// queryFlood, a helper, sends the query MESHD_QFLOOD_HEX to
// MESHD_QFLOOD_TO at MESHD_QFLOOD_RATE packets a second for
// MESHD_QFLOOD_SECONDS, spread round-robin over sockets bound to each
// address of the namespace's eth0 but its first, so that the packets come
// from many sources. It prints how many it sent.
func queryFlood() error {
	to, err := netip.ParseAddrPort(os.Getenv("MESHD_QFLOOD_TO"))
	if err != nil {
		return fmt.Errorf("MESHD_QFLOOD_TO: %w", err)
	}
	pkt, err := hex.DecodeString(os.Getenv("MESHD_QFLOOD_HEX"))
	if err != nil {
		return fmt.Errorf("MESHD_QFLOOD_HEX: %w", err)
	}
	rate, err := strconv.Atoi(os.Getenv("MESHD_QFLOOD_RATE"))
	if err != nil || rate <= 0 {
		return fmt.Errorf("MESHD_QFLOOD_RATE: want a positive rate")
	}
	secs, err := strconv.ParseFloat(os.Getenv("MESHD_QFLOOD_SECONDS"), 64)
	if err != nil {
		return fmt.Errorf("MESHD_QFLOOD_SECONDS: %w", err)
	}
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return err
	}
	// Multicast leaves by the namespace's route for 224.0.0.0/4 (eth0),
	// from each socket's own address.
	var conns []*net.UDPConn
	for i, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || i == 0 {
			continue
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ipn.IP})
		if err != nil {
			return err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return fmt.Errorf("eth0 has no addresses to send from besides its first")
	}
	dst := net.UDPAddrFromAddrPort(to)
	// Bursts every 10 ms keep the rate without a timer per packet.
	const tick = 10 * time.Millisecond
	total := int(float64(rate) * secs)
	start := time.Now()
	sent := 0
	for sent < total {
		due := min(total, int(time.Since(start).Seconds()*float64(rate))+rate/100)
		for ; sent < due; sent++ {
			// A full socket buffer drops the packet, as a busy link would.
			conns[sent%len(conns)].WriteToUDP(pkt, dst)
		}
		time.Sleep(tick)
	}
	fmt.Println(sent)
	return nil
}
