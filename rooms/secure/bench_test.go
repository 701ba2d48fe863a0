package secure

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"
)

// The TLS benchmarks measure what this package replaced: TLS 1.3 with
// self-signed Ed25519 certificates and client auth, as rooms used it, so
// docs/BENCHMARKS.md compares the two from one run.

func BenchmarkHandshake(b *testing.B) {
	host, hostKey := newStatic(b)
	member, _ := newStatic(b)
	b.ReportAllocs()
	for b.Loop() {
		craw, sraw := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			_, err := Server(context.Background(), sraw, Config{Static: host})
			errc <- err
		}()
		if _, err := Client(context.Background(), craw, Config{Static: member}, hostKey); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		craw.Close()
		sraw.Close()
	}
}

func tlsCert(b testing.TB) tls.Certificate {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsConfigs(b testing.TB) (client, server *tls.Config) {
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{tlsCert(b)},
		ClientAuth:   tls.RequireAnyClientCert,
	}
	client = &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{tlsCert(b)},
		InsecureSkipVerify: true,
	}
	return client, server
}

func tlsPair(b *testing.B, ccfg, scfg *tls.Config) (*tls.Conn, *tls.Conn) {
	craw, sraw := net.Pipe()
	c, s := tls.Client(craw, ccfg), tls.Server(sraw, scfg)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return c, s
}

func BenchmarkHandshakeTLS(b *testing.B) {
	ccfg, scfg := tlsConfigs(b)
	b.ReportAllocs()
	for b.Loop() {
		c, s := tlsPair(b, ccfg, scfg)
		c.NetConn().Close()
		s.NetConn().Close()
	}
}

// benchWrite writes 24 KiB (two records here, a frame as large as a busy
// batch) per op while a goroutine reads it all.
func benchWrite(b *testing.B, w io.Writer, r io.Reader) {
	msg := make([]byte, 24<<10)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	w.(io.Closer).Close()
	<-done
}

func BenchmarkWrite24K(b *testing.B) {
	s := newSession(b, pipe)
	defer s.b.Close()
	benchWrite(b, s.a, s.b)
}

func BenchmarkWrite24KTLS(b *testing.B) {
	ccfg, scfg := tlsConfigs(b)
	c, s := tlsPair(b, ccfg, scfg)
	defer s.Close()
	benchWrite(b, c, s)
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchSessionMemory keeps b.N sessions open, each having carried one
// msg, and reports the live heap per session (both ends), which is what
// a host with many quiet members pays. Run with -benchtime=200x: the
// per-op time means nothing here.
func benchSessionMemory(b *testing.B, msg []byte, open func() (w io.Writer, r io.Reader, keep any)) {
	var keep []any
	before := heapInUse()
	for range b.N {
		w, r, k := open()
		go w.Write(msg)
		if _, err := io.ReadFull(r, make([]byte, len(msg))); err != nil {
			b.Fatal(err)
		}
		keep = append(keep, k)
	}
	b.ReportMetric(float64(heapInUse()-before)/float64(b.N), "heap-B/session")
	runtime.KeepAlive(keep)
}

func noiseOpener(b *testing.B) func() (io.Writer, io.Reader, any) {
	return func() (io.Writer, io.Reader, any) {
		s := newSession(b, pipe)
		return s.a, s.b, s
	}
}

func tlsOpener(b *testing.B) func() (io.Writer, io.Reader, any) {
	ccfg, scfg := tlsConfigs(b)
	return func() (io.Writer, io.Reader, any) {
		c, s := tlsPair(b, ccfg, scfg)
		return c, s, [2]*tls.Conn{c, s}
	}
}

func BenchmarkSessionMemory(b *testing.B) {
	for _, size := range []int{40, 24 << 10} {
		msg := make([]byte, size)
		b.Run(fmt.Sprintf("noise/%dB", size), func(b *testing.B) { benchSessionMemory(b, msg, noiseOpener(b)) })
		b.Run(fmt.Sprintf("tls/%dB", size), func(b *testing.B) { benchSessionMemory(b, msg, tlsOpener(b)) })
	}
}
