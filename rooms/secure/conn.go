package secure

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/flynn/noise"
)

// Conn is an established session: a net.Conn whose bytes travel in
// records of up to MaxRecord plaintext bytes, each a 2-byte big-endian
// length of the sealed record followed by the record sealed with
// ChaCha20-Poly1305 under the direction's key, the length as additional
// data. The nonce is the record's position in its direction, so a
// replayed, dropped or reordered record fails authentication like a
// forged one; any failure ends the session.
//
// One goroutine may Read while another Writes; Close may be called from
// any goroutine and does not wait for either.
type Conn struct {
	raw      net.Conn
	peer     ed25519.PublicKey
	binding  []byte
	tampered func()
	close    sync.Once

	rmu   sync.Mutex
	rx    *noise.CipherState
	in    []byte // raw bytes received: in[start:end] not yet used
	start int
	end   int
	plain []byte // opened, not yet read: a window of in
	rerr  error  // sticky: a record failed or the stream broke mid-record

	wmu  sync.Mutex
	tx   *noise.CipherState
	out  []byte
	werr error // sticky: a record may have been half written
}

func newConn(raw net.Conn, tx, rx *noise.CipherState, peer ed25519.PublicKey, binding []byte, tampered func()) *Conn {
	return &Conn{
		raw:      raw,
		tx:       tx,
		rx:       rx,
		peer:     peer,
		binding:  slices.Clone(binding),
		tampered: tampered,
	}
}

// PeerKey returns the Ed25519 identity the peer proved in the handshake.
func (c *Conn) PeerKey() ed25519.PublicKey { return c.peer }

// ChannelBinding returns the handshake hash: the same 32 bytes at both
// ends of this session and no other, for proofs that must not be
// replayed into another session.
func (c *Conn) ChannelBinding() []byte { return slices.Clone(c.binding) }

// Read returns plaintext from the next records. A read that times out may
// be retried: a partly received record is kept.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readRecord(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// readRecord opens the next record into c.plain, reading from raw as
// needed.
func (c *Conn) readRecord() error {
	if c.in == nil {
		c.in = make([]byte, hdrLen+maxSealed)
	}
	for {
		if c.end-c.start >= hdrLen {
			hdr := c.in[c.start : c.start+hdrLen]
			n := int(binary.BigEndian.Uint16(hdr))
			if n < tagLen || n > maxSealed {
				return c.fail(fmt.Errorf("%w: record length %d", ErrTampered, n))
			}
			if c.end-c.start >= hdrLen+n {
				body := c.in[c.start+hdrLen : c.start+hdrLen+n]
				pt, err := c.rx.Decrypt(body[:0], hdr, body)
				if err != nil {
					return c.fail(fmt.Errorf("%w: %w", ErrTampered, err))
				}
				c.start += hdrLen + n
				c.plain = pt
				return nil
			}
		}
		if c.start > 0 {
			c.end = copy(c.in, c.in[c.start:c.end])
			c.start = 0
		}
		m, err := c.raw.Read(c.in[c.end:])
		c.end += m
		if err != nil && m == 0 {
			if errors.Is(err, io.EOF) {
				if c.end > 0 {
					err = io.ErrUnexpectedEOF
				}
				c.rerr = err
			}
			return err
		}
	}
}

// fail ends the session over a record that did not authenticate.
func (c *Conn) fail(err error) error {
	c.rerr = err
	if c.tampered != nil {
		c.tampered()
	}
	c.Close()
	return err
}

// Write seals p into as many records as it needs. After a failed write
// the session is unusable: part of a record may have gone out.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.out == nil {
		c.out = make([]byte, 0, hdrLen+maxSealed)
	}
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+MaxRecord)]
		b := binary.BigEndian.AppendUint16(c.out[:0], uint16(len(chunk)+tagLen))
		b, err := c.tx.Encrypt(b, b[:hdrLen], chunk)
		if err != nil {
			c.werr = fmt.Errorf("session: %w", err)
			return done, c.werr
		}
		if _, err := c.raw.Write(b); err != nil {
			c.werr = err
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
}

// Close closes the connection at once, without waiting for a Read or
// Write in progress, which then fail.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.close.Do(func() { err = c.raw.Close() })
	return err
}

func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
