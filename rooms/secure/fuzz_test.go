package secure

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"testing"

	"github.com/flynn/noise"
)

var (
	fuzzKey   = [32]byte{1, 2, 3}
	testSuite = newCipherSuite(noise.DH25519)
)

// fuzzConn is a host end whose receive key is fuzzKey, reading stream.
func fuzzConn(stream []byte, tampered func()) *Conn {
	rx := noise.UnsafeNewCipherState(testSuite, fuzzKey, 0)
	tx := noise.UnsafeNewCipherState(testSuite, fuzzKey, 0)
	return newConn(&bufConn{r: bytes.NewReader(stream)}, tx, rx, nil, nil, tampered)
}

// sealAll makes the records a member with send key fuzzKey writes for
// msgs, in order.
func sealAll(msgs ...[]byte) []byte {
	bc := &bufConn{}
	c := newConn(bc, noise.UnsafeNewCipherState(testSuite, fuzzKey, 0), nil, nil, nil, nil)
	for _, m := range msgs {
		c.Write(m)
	}
	return bc.w.Bytes()
}

// FuzzRecords feeds the record reader any byte stream: it must return
// no more plaintext than the stream holds, end in EOF, a truncation or
// tampering, and count tampering at most once.
func FuzzRecords(f *testing.F) {
	f.Add(sealAll([]byte("hello")))
	f.Add(sealAll([]byte("one"), []byte("two"), nil))
	f.Add(sealAll(bytes.Repeat([]byte{0xaa}, MaxRecord+100)))
	f.Add(append(sealAll([]byte("ok")), 0xff, 0xff, 0))
	f.Add([]byte{0, 16})
	f.Fuzz(func(t *testing.T, stream []byte) {
		tampered := 0
		c := fuzzConn(stream, func() { tampered++ })
		n := 0
		buf := make([]byte, 1000)
		var err error
		for err == nil {
			var m int
			m, err = c.Read(buf)
			n += m
			if n > len(stream) {
				t.Fatalf("read %d bytes of plaintext from a %d-byte stream", n, len(stream))
			}
		}
		switch {
		case errors.Is(err, ErrTampered):
			if tampered != 1 {
				t.Fatalf("tampering counted %d times", tampered)
			}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if tampered != 0 {
				t.Fatalf("tampering counted on %v", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

var fuzzHost, fuzzMember = func() (*Static, *Static) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	h, err := NewStatic(key)
	if err != nil {
		panic(err)
	}
	key = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	m, err := NewStatic(key)
	if err != nil {
		panic(err)
	}
	return h, m
}()

// FuzzHandshake plays a peer that sends arbitrary bytes: to the host
// (asHost) or to a member. Neither may crash, read past a message's bound,
// or complete a handshake with a peer that holds no key.
func FuzzHandshake(f *testing.F) {
	// Real first messages (an ephemeral key), then garbage or nothing.
	hs, _, _ := newHandshake(fuzzMember, true)
	msg1, _, _, _ := hs.WriteMessage(nil, nil)
	f.Add(true, append([]byte{0, byte(len(msg1))}, msg1...))
	f.Add(true, append(append([]byte{0, byte(len(msg1))}, msg1...), 0, 160))
	hs, _, _ = newHandshake(fuzzHost, false)
	hs.ReadMessage(nil, msg1)
	msg2, _, _, _ := hs.WriteMessage(nil, fuzzHost.payload())
	f.Add(false, append([]byte{0, byte(len(msg2))}, msg2...))
	f.Add(false, []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, asHost bool, in []byte) {
		bc := &bufConn{r: bytes.NewReader(in)}
		var err error
		if asHost {
			_, err = Server(context.Background(), bc, Config{Static: fuzzHost})
		} else {
			_, err = Client(context.Background(), bc, Config{Static: fuzzMember}, fuzzHost.id)
		}
		if err == nil {
			t.Fatal("handshake completed with a peer that holds no key")
		}
		if read := len(in) - bc.r.Len(); read > 2*(hdrLen+maxHandshakeMsg) {
			t.Fatalf("read %d bytes of handshake", read)
		}
	})
}
