package secure

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flynn/noise"

	"meshd/internal/leaktest"
)

func newStatic(t testing.TB) (*Static, ed25519.PublicKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStatic(key)
	if err != nil {
		t.Fatal(err)
	}
	return st, pub
}

// tcpPair returns the two ends of a loopback TCP connection: kernel
// buffers, real deadlines.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// session is a completed handshake: a is the member (client), b the host.
type session struct {
	a, b           *Conn
	aKey, bKey     ed25519.PublicKey
	aBad, bBad     atomic.Int64 // Tampered calls
	aRaw, bRaw     net.Conn
	aStat, bStatic *Static
}

func newSession(t testing.TB, raw func(testing.TB) (net.Conn, net.Conn)) *session {
	t.Helper()
	s := &session{}
	s.aStat, s.aKey = newStatic(t)
	s.bStatic, s.bKey = newStatic(t)
	s.aRaw, s.bRaw = raw(t)
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		var err error
		s.b, err = Server(ctx, s.bRaw, Config{Static: s.bStatic, Tampered: func() { s.bBad.Add(1) }})
		errc <- err
	}()
	var err error
	s.a, err = Client(ctx, s.aRaw, Config{Static: s.aStat, Tampered: func() { s.aBad.Add(1) }}, s.bKey)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return s
}

func pipe(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }

func TestHandshake(t *testing.T) {
	s := newSession(t, tcpPair)
	if !s.a.PeerKey().Equal(s.bKey) {
		t.Error("member's PeerKey is not the host's identity")
	}
	if !s.b.PeerKey().Equal(s.aKey) {
		t.Error("host's PeerKey is not the member's identity")
	}
	ba, bb := s.a.ChannelBinding(), s.b.ChannelBinding()
	if len(ba) != 32 || !bytes.Equal(ba, bb) {
		t.Errorf("channel bindings differ or are not a SHA-256: %x vs %x", ba, bb)
	}
	other := newSession(t, tcpPair)
	if bytes.Equal(ba, other.a.ChannelBinding()) {
		t.Error("two sessions share a channel binding")
	}

	// Both directions, a write larger than several records.
	big := make([]byte, 5*MaxRecord+123)
	rand.Read(big)
	done := make(chan error, 1)
	go func() {
		_, err := s.a.Write(big)
		done <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(s.b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("host read other bytes than the member wrote")
	}
	if _, err := s.b.Write([]byte("welcome")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	var out []byte
	for len(out) < 7 {
		n, err := s.a.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	if string(out) != "welcome" {
		t.Errorf("member read %q, want welcome", out)
	}
	s.a.Close()
	if _, err := s.b.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("read after the peer closed: err = %v, want EOF", err)
	}
	if s.aBad.Load()+s.bBad.Load() != 0 {
		t.Error("a clean session counted tampering")
	}
}

// countingConn counts the bytes written through it.
type countingConn struct {
	net.Conn
	wrote atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.wrote.Add(int64(len(p)))
	return c.Conn.Write(p)
}

func TestWrongHostKey(t *testing.T) {
	member, _ := newStatic(t)
	host, hostKey := newStatic(t)
	_, announced := newStatic(t)
	craw, sraw := tcpPair(t)
	counted := &countingConn{Conn: craw}

	errc := make(chan error, 1)
	go func() {
		_, err := Server(context.Background(), sraw, Config{Static: host})
		errc <- err
	}()
	_, err := Client(context.Background(), counted, Config{Static: member}, announced)
	mm, ok := errors.AsType[*KeyMismatchError](err)
	if !ok {
		t.Fatalf("client: err = %v, want a KeyMismatchError", err)
	}
	if !mm.Want.Equal(announced) || !mm.Got.Equal(hostKey) {
		t.Errorf("mismatch names want %x got %x; want %x got %x", mm.Want, mm.Got, announced, hostKey)
	}
	// The member sent only its ephemeral key: its identity (message 3)
	// never left.
	if n := counted.wrote.Load(); n != hdrLen+32 {
		t.Errorf("member wrote %d bytes before giving up, want only message 1 (%d)", n, hdrLen+32)
	}
	craw.Close()
	if err := <-errc; err == nil {
		t.Error("host completed a handshake the member abandoned")
	}
}

// A host whose payload is signed by another key than it names is refused.
func TestForgedIdentityPayload(t *testing.T) {
	member, _ := newStatic(t)
	host, _ := newStatic(t)
	_, victimKey := newStatic(t)
	// The host claims the victim's identity with its own signature.
	forged := *host
	forged.id = victimKey
	craw, sraw := tcpPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Server(context.Background(), sraw, Config{Static: &forged})
		errc <- err
	}()
	_, err := Client(context.Background(), craw, Config{Static: member}, victimKey)
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("client: err = %v, want ErrHandshake", err)
	}
	craw.Close()
	if err := <-errc; err == nil {
		t.Error("the forging host completed a handshake")
	}
}

// bufConn is a net.Conn over byte buffers: reads drain r, writes fill w.
type bufConn struct {
	net.Conn
	r      *bytes.Reader
	w      bytes.Buffer
	closed bool
}

func (c *bufConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *bufConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *bufConn) Close() error                { c.closed = true; return nil }

// records seals each message as the member would and returns the
// records' bytes, one slice per message.
func records(t *testing.T, s *session, msgs ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range msgs {
		bc := &bufConn{}
		s.a.raw = bc
		if _, err := s.a.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		out = append(out, bc.w.Bytes())
	}
	return out
}

// readAll feeds stream to the host's end and reads until an error.
func readAll(s *session, stream []byte) (string, error, *bufConn) {
	bc := &bufConn{r: bytes.NewReader(stream)}
	s.b.raw = bc
	var got []byte
	buf := make([]byte, 64)
	for {
		n, err := s.b.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got), err, bc
		}
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestRecords(t *testing.T) {
	big := string(bytes.Repeat([]byte("x"), MaxRecord+1))
	tests := []struct {
		name     string
		stream   func(r [][]byte) []byte
		want     string
		wantErr  error
		tampered int64
	}{
		{"in order", func(r [][]byte) []byte { return cat(r...) }, "onetwothree" + big, io.EOF, 0},
		{"replayed", func(r [][]byte) []byte { return cat(r[0], r[1], r[1]) }, "onetwo", ErrTampered, 1},
		{"reordered", func(r [][]byte) []byte { return cat(r[1], r[0]) }, "", ErrTampered, 1},
		{"dropped", func(r [][]byte) []byte { return cat(r[0], r[2]) }, "one", ErrTampered, 1},
		{"bit flipped", func(r [][]byte) []byte {
			b := cat(r[0])
			b[hdrLen+1] ^= 1
			return b
		}, "", ErrTampered, 1},
		{"tag flipped", func(r [][]byte) []byte {
			b := cat(r[0])
			b[len(b)-1] ^= 0x80
			return b
		}, "", ErrTampered, 1},
		{"length changed", func(r [][]byte) []byte {
			b := cat(r[0], r[1])
			b[1]-- // one byte shorter: the tag is misread
			return b
		}, "", ErrTampered, 1},
		{"oversized length", func(r [][]byte) []byte {
			return cat([]byte{0xff, 0xff}, make([]byte, 100))
		}, "", ErrTampered, 1},
		{"shorter than a tag", func(r [][]byte) []byte {
			return cat([]byte{0, tagLen - 1}, make([]byte, tagLen-1))
		}, "", ErrTampered, 1},
		{"truncated body", func(r [][]byte) []byte {
			return cat(r[0], r[1][:len(r[1])-1])
		}, "one", io.ErrUnexpectedEOF, 0},
		{"truncated header", func(r [][]byte) []byte {
			return cat(r[0], r[1][:1])
		}, "one", io.ErrUnexpectedEOF, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(t, pipe)
			r := records(t, s, "one", "two", "three", big)
			got, err, bc := readAll(s, tt.stream(r))
			if got != tt.want {
				t.Errorf("read %q, want %q", trim(got), trim(tt.want))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if n := s.bBad.Load(); n != tt.tampered {
				t.Errorf("tampered counted %d times, want %d", n, tt.tampered)
			}
			if tt.tampered > 0 {
				if !bc.closed {
					t.Error("a tampered session was not closed")
				}
				// The error sticks: nothing after a forgery is read.
				if _, err := s.b.Read(make([]byte, 1)); !errors.Is(err, ErrTampered) {
					t.Errorf("read after tampering: err = %v, want ErrTampered", err)
				}
			}
		})
	}
	// The split itself: MaxRecord+1 bytes made two records.
	s := newSession(t, pipe)
	r := records(t, s, big)
	if want := 2*(hdrLen+tagLen) + len(big); len(r[0]) != want {
		t.Errorf("a write of MaxRecord+1 bytes sealed into %d bytes, want %d (two records)", len(r[0]), want)
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestDeadlines(t *testing.T) {
	s := newSession(t, tcpPair)

	// A read that times out mid-record loses nothing: the rest of the
	// record completes it.
	bc := &bufConn{}
	s.a.raw = bc
	if _, err := s.a.Write([]byte("patience")); err != nil {
		t.Fatal(err)
	}
	rec := bc.w.Bytes()
	if _, err := s.aRaw.Write(rec[:5]); err != nil {
		t.Fatal(err)
	}
	s.b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 32)
	_, err := s.b.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with half a record: err = %v, want a deadline error", err)
	}
	if _, err := s.aRaw.Write(rec[5:]); err != nil {
		t.Fatal(err)
	}
	s.b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.b.Read(buf)
	if err != nil || string(buf[:n]) != "patience" {
		t.Fatalf("read after the timeout: %q, %v; want patience", buf[:n], err)
	}

	// A write past its deadline fails, and so does every later write:
	// part of a record may be out.
	s.a.raw = s.aRaw
	s.a.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := s.a.Write([]byte("late")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: err = %v", err)
	}
	s.a.SetWriteDeadline(time.Time{})
	if _, err := s.a.Write([]byte("later")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write after a failed write: err = %v, want the first error again", err)
	}

	// Close unblocks a Read waiting without a deadline.
	s.b.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := s.b.Read(buf)
		errc <- err
	}()
	s.b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read on a closed session: err = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	leaktest.Check(t, "meshd/rooms/secure.")
}

func TestHandshakeDeadlines(t *testing.T) {
	host, _ := newStatic(t)
	// A client that connects and says nothing holds the host only until
	// the deadline the caller set.
	_, sraw := tcpPair(t)
	sraw.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := Server(context.Background(), sraw, Config{Static: host}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent client: err = %v, want a deadline error", err)
	}

	// Cancelling the context ends a handshake waiting on the peer.
	_, sraw = tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Server(ctx, sraw, Config{Static: host})
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled handshake: err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the context did not end the handshake")
	}

	// A context deadline does the same for the member.
	member, _ := newStatic(t)
	craw, _ := tcpPair(t)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Client(ctx, craw, Config{Static: member}, ed25519.PublicKey(make([]byte, 32))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent host: err = %v, want context.DeadlineExceeded", err)
	}
	leaktest.Check(t, "meshd/rooms/secure.")
}

// Garbage where a handshake message belongs ends the handshake with an
// error, before reading more than one message's bound.
func TestHandshakeGarbage(t *testing.T) {
	host, _ := newStatic(t)
	for _, in := range [][]byte{
		{0, 0},                // empty message
		{0xff, 0xff, 1, 2, 3}, // oversized length
		append([]byte{0, 32}, make([]byte, 32)...), // a message 1, then EOF
		append([]byte{0, 33}, make([]byte, 33)...), // a payload in message 1
	} {
		bc := &bufConn{r: bytes.NewReader(in)}
		if _, err := Server(context.Background(), bc, Config{Static: host}); err == nil {
			t.Errorf("host accepted %x", in)
		}
		if bc.r.Size()-int64(bc.r.Len()) > hdrLen+maxHandshakeMsg {
			t.Errorf("host read past one message's bound on %x", in)
		}
	}
}

// A member from before Noise sessions, which opens with a TLS
// ClientHello, is told apart from garbage.
func TestOldTLSMember(t *testing.T) {
	ccfg, _ := tlsConfigs(t)
	host, _ := newStatic(t)
	craw, sraw := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(craw, ccfg).Handshake()
	}()
	_, err := Server(context.Background(), sraw, Config{Static: host})
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "speaks TLS") {
		t.Errorf("host against an old member: err = %v, want it to say the member speaks TLS", err)
	}
	sraw.Close()
	<-done
}

// The session carries frames whose writer and reader are different
// goroutines at both ends, as rooms uses it.
func TestConcurrentReadWrite(t *testing.T) {
	s := newSession(t, tcpPair)
	const n = 200
	msg := bytes.Repeat([]byte("m"), 3000)
	var wg sync.WaitGroup
	for _, c := range []*Conn{s.a, s.b} {
		wg.Go(func() {
			for range n {
				if _, err := c.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			buf := make([]byte, n*len(msg))
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.a.Close()
	s.b.Close()
	leaktest.Check(t, "meshd/rooms/secure.")
}

// dh must agree with the Noise library's own 25519, which its test
// vectors check, or peers running the stock function could not talk to
// this one.
func TestDHMatchesNoise25519(t *testing.T) {
	for range 20 {
		var d dh
		a, err := d.GenerateKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := noise.DH25519.GenerateKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		base := make([]byte, 32)
		base[0] = 9
		pub, err := noise.DH25519.DH(a.Private, base)
		if err != nil || !bytes.Equal(pub, a.Public) {
			t.Fatalf("public key %x, stock X25519 of the private key %x (%v)", a.Public, pub, err)
		}
		got, err := d.DH(a.Private, b.Public)
		if err != nil {
			t.Fatal(err)
		}
		want, err := noise.DH25519.DH(b.Private, a.Public)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("shared secrets differ: %x vs %x", got, want)
		}
		// A key it did not make is parsed, not refused.
		if got, err := d.DH(b.Private, a.Public); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DH with an unknown private key: %x, %v", got, err)
		}
	}
	// A low-order point (zero) makes the shared secret zero: refused.
	var d dh
	a, _ := d.GenerateKeypair(rand.Reader)
	if _, err := d.DH(a.Private, make([]byte, 32)); !errors.Is(err, ErrHandshake) {
		t.Errorf("DH with the zero point: err = %v, want ErrHandshake", err)
	}
}

// chunkConn returns what it holds in reads of random sizes, as TCP may.
type chunkConn struct {
	bufConn
	max int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	n := 1 + mrand.IntN(c.max)
	return c.r.Read(p[:min(len(p), n)])
}

// Records of every size around the small buffer's edge, arriving in
// pieces of any size, read back whole; afterwards the session holds no
// buffer.
func TestRecordBuffering(t *testing.T) {
	sizes := []int{1, smallBuf - hdrLen - tagLen - 1, smallBuf - hdrLen - tagLen, smallBuf - hdrLen - tagLen + 1, 3, 5000, MaxRecord, 2, MaxRecord + 1, 7}
	for _, chunk := range []int{1, 7, 1000, 40000} {
		s := newSession(t, pipe)
		var msgs []string
		var want []byte
		for i, n := range sizes {
			m := bytes.Repeat([]byte{byte('a' + i)}, n)
			msgs = append(msgs, string(m))
			want = append(want, m...)
		}
		stream := cat(records(t, s, msgs...)...)
		s.b.raw = &chunkConn{bufConn: bufConn{r: bytes.NewReader(stream)}, max: chunk}
		got := make([]byte, 0, len(want))
		buf := make([]byte, 3000)
		for {
			n, err := s.b.Read(buf[:1+mrand.IntN(len(buf))])
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("chunks of up to %d: %v", chunk, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("chunks of up to %d: read %d bytes, not the %d written", chunk, len(got), len(want))
		}
		if s.b.in != nil {
			t.Errorf("chunks of up to %d: an idle session holds a %d-byte buffer", chunk, len(s.b.in))
		}
	}
}

// Buffered is true exactly while Read can return without reading the
// connection: plaintext left over, a record received whole or in part,
// or an error to report.
func TestBuffered(t *testing.T) {
	s := newSession(t, tcpPair)
	recs := records(t, s, "one", "two")
	bc := &bufConn{r: bytes.NewReader(cat(recs[0], recs[1]))}
	s.b.raw = bc
	if s.b.Buffered() {
		t.Fatal("Buffered before anything was read")
	}
	buf := make([]byte, 2)
	steps := []struct {
		want     string
		buffered bool
	}{
		{"on", true}, // "e" left, and the second record received with the first
		{"e", true},  // the second record
		{"tw", true}, // "o" left
		{"o", false}, // nothing: the next Read reads the connection
	}
	for _, st := range steps {
		n, err := s.b.Read(buf[:len(st.want)])
		if err != nil || string(buf[:n]) != st.want {
			t.Fatalf("Read = %q, %v; want %q", buf[:n], err, st.want)
		}
		if got := s.b.Buffered(); got != st.buffered {
			t.Errorf("after reading %q: Buffered = %v, want %v", st.want, got, st.buffered)
		}
	}
	if _, err := s.b.Read(buf); err == nil {
		t.Fatal("Read past the stream's end: no error")
	}
	if !s.b.Buffered() {
		t.Error("Buffered = false with an error to report")
	}
}

// A read that times out with part of a large record received keeps it,
// in the large buffer it borrowed, and the rest completes the record;
// then the buffer goes back.
func TestDeadlineLargeRecord(t *testing.T) {
	s := newSession(t, tcpPair)
	msg := bytes.Repeat([]byte("L"), 5000)
	rec := records(t, s, string(msg))[0]
	s.a.raw = s.aRaw
	if _, err := s.aRaw.Write(rec[:2000]); err != nil {
		t.Fatal(err)
	}
	s.b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, len(msg))
	if _, err := s.b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with part of a large record: err = %v, want a deadline error", err)
	}
	if !s.b.Buffered() {
		t.Fatal("the part of the record received was let go")
	}
	if _, err := s.aRaw.Write(rec[2000:]); err != nil {
		t.Fatal(err)
	}
	s.b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s.b, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("read after the timeout: %v, whole record %v", err, bytes.Equal(buf, msg))
	}
	if s.b.in != nil {
		t.Errorf("after the record: the session holds a %d-byte buffer", len(s.b.in))
	}
}

// A member meeting a host of the previous protocol version (prologue
// "meshd session v1") fails the handshake, and its error tells the user
// the host may run a different meshd version.
func TestPrologueVersionMismatch(t *testing.T) {
	member, _ := newStatic(t)
	host, hostKey := newStatic(t)
	craw, sraw := tcpPair(t)
	errc := make(chan error, 1)
	go func() {
		// The host side of a handshake as a meshd of v1 runs it.
		hs, err := noise.NewHandshakeState(noise.Config{
			CipherSuite:   newCipherSuite(&dh{keys: []*ecdh.PrivateKey{host.key}}),
			Pattern:       noise.HandshakeXX,
			Prologue:      []byte("meshd session v1"),
			StaticKeypair: dhKey(host.key),
		})
		if err == nil {
			var msg []byte
			if msg, err = readMsg(sraw); err == nil {
				if _, _, _, err = hs.ReadMessage(nil, msg); err == nil {
					if msg, _, _, err = hs.WriteMessage(nil, host.payload()); err == nil {
						err = writeMsg(sraw, msg)
					}
				}
			}
		}
		errc <- err
	}()
	_, err := Client(context.Background(), craw, Config{Static: member}, hostKey)
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "the host may run a different meshd version") {
		t.Errorf("client: err = %v, want ErrHandshake naming a different meshd version", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("v1 host: %v", err)
	}
	if prologue == "meshd session v1" {
		t.Fatal("the test's old prologue is the current one")
	}
}
