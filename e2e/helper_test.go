package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"meshd/rooms/wire"
)

// helperEnv names the helper this test binary should run instead of the
// tests, when started inside a namespace by host.helper.
const helperEnv = "MESHD_E2E_HELPER"

func runHelper(name string) int {
	var err error
	switch name {
	case "forge":
		err = forge()
	case "sniff":
		err = sniff()
	case "flood":
		err = flood()
	case "crowd":
		err = crowd()
	case "send":
		err = send()
	case "qflood":
		err = queryFlood()
	case "nackstorm":
		err = nackStorm()
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// forge multicasts, every 100ms until killed, an announcement that claims
// host key MESHD_FORGE_Q but is signed by a key of its own.
func forge() error {
	q, err := hex.DecodeString(os.Getenv("MESHD_FORGE_Q"))
	if err != nil || len(q) != ed25519.PublicKeySize {
		return fmt.Errorf("MESHD_FORGE_Q: want a hex Ed25519 key")
	}
	serial, err := strconv.ParseUint(os.Getenv("MESHD_FORGE_SERIAL"), 10, 64)
	if err != nil {
		return fmt.Errorf("MESHD_FORGE_SERIAL: %w", err)
	}
	group, err := netip.ParseAddrPort(os.Getenv("MESHD_FORGE_GROUP"))
	if err != nil {
		return fmt.Errorf("MESHD_FORGE_GROUP: %w", err)
	}
	a := wire.Announce{
		Serial:   serial,
		Lifetime: 60,
		Group:    netip.MustParseAddrPort("239.255.78.1:7703"),
		Room:     os.Getenv("MESHD_FORGE_ROOM"),
		Addrs:    []netip.AddrPort{netip.MustParseAddrPort("10.77.0.99:7702")},
	}
	copy(a.HostKey[:], q)
	body, err := wire.AppendAnnounceBody(nil, &a)
	if err != nil {
		return err
	}
	_, wrongKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sig, err := wrongKey.Sign(nil, body, &ed25519.Options{Context: "meshd announce v1"})
	if err != nil {
		return err
	}
	pkt := append(body, sig...)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(group))
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		if _, err := c.Write(pkt); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listenGroup joins group on eth0, the interface of a namespace host, and
// listens on its port.
func listenGroup(group netip.AddrPort) (*net.UDPConn, error) {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return nil, err
	}
	return net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(group))
}

// sniff joins group MESHD_SNIFF_GROUP on eth0 and prints, in hex, one line
// per datagram, until MESHD_SNIFF_COUNT datagrams or 20 seconds.
func sniff() error {
	group, err := netip.ParseAddrPort(os.Getenv("MESHD_SNIFF_GROUP"))
	if err != nil {
		return fmt.Errorf("MESHD_SNIFF_GROUP: %w", err)
	}
	count, err := strconv.Atoi(os.Getenv("MESHD_SNIFF_COUNT"))
	if err != nil {
		return fmt.Errorf("MESHD_SNIFF_COUNT: %w", err)
	}
	c, err := listenGroup(group)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("listening")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 65536)
	for range count {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		fmt.Println(hex.EncodeToString(buf[:n]))
	}
	return nil
}

// flood multicasts MESHD_FLOOD_COUNT announcements to MESHD_FLOOD_GROUP,
// each for a distinct (Q, R) and none validly signed, as fast as it can.
func flood() error {
	count, err := strconv.Atoi(os.Getenv("MESHD_FLOOD_COUNT"))
	if err != nil {
		return fmt.Errorf("MESHD_FLOOD_COUNT: %w", err)
	}
	group, err := netip.ParseAddrPort(os.Getenv("MESHD_FLOOD_GROUP"))
	if err != nil {
		return fmt.Errorf("MESHD_FLOOD_GROUP: %w", err)
	}
	a := wire.Announce{
		Serial:   1,
		Lifetime: 3600,
		Group:    netip.MustParseAddrPort("239.255.78.1:7703"),
		Room:     "flood-00000000",
		Addrs:    []netip.AddrPort{netip.MustParseAddrPort("10.77.0.99:7702")},
	}
	body, err := wire.AppendAnnounceBody(nil, &a)
	if err != nil {
		return err
	}
	pkt := append(body, make([]byte, ed25519.SignatureSize)...)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(group))
	if err != nil {
		return err
	}
	defer c.Close()
	// Offsets in an announcement (docs/PROTOCOL.md): the host key, and the
	// room name after the header, serial, key, lifetime and data group.
	const qAt, nameAt = 12, 4 + 8 + 32 + 2 + 7 + 1
	for i := range count {
		// A fresh host key and room name for every packet.
		binary.BigEndian.PutUint64(pkt[qAt:], uint64(i))
		copy(pkt[nameAt:], fmt.Sprintf("flood-%08x", i))
		rand.Read(pkt[len(body):])
		if _, err := c.Write(pkt); err != nil {
			return err
		}
	}
	return nil
}
