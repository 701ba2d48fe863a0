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
//
// A session holds a read buffer only while it has received bytes not yet
// read, or is blocked in Read: a host keeps hundreds of sessions on a
// router with 64 MB, most of them carrying a few small frames a second,
// and its readers wait for input outside Read (see Buffered). The buffer
// is a small one (smallBuf) from a pool; records that do not fit borrow a
// full-size one from another for as long as they are being read or
// written.
type Conn struct {
	raw      net.Conn
	peer     ed25519.PublicKey
	binding  []byte
	tampered func()
	close    sync.Once

	rmu   sync.Mutex
	rx    *noise.CipherState
	in    []byte // nil, a pooled small buffer, or a pooled buffer holding one large record
	start int    // in[start:end]: received, not yet opened
	end   int
	plain []byte // opened, not yet read: a window of in
	rerr  error  // sticky: a record failed or the stream broke mid-record

	wmu  sync.Mutex
	tx   *noise.CipherState
	werr error // sticky: a record may have been half written
}

// smallBuf holds a session's ordinary traffic (acks, says, a batch of a
// few lines) without a full-size buffer.
const smallBuf = 1024

// small holds a session's received bytes while it has some.
var small = sync.Pool{New: func() any { return new([smallBuf]byte) }}

// large holds one whole record, sealed or being sealed.
var large = sync.Pool{New: func() any { return new([hdrLen + maxSealed]byte) }}

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
			c.release()
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	c.release()
	return n, nil
}

// Buffered reports whether Read has something to return without reading
// the connection: plaintext, received bytes not yet opened, or an error.
// A reader that waits for the connection to become readable before it
// calls Read (to wait on a shallow stack) must not wait while it does.
func (c *Conn) Buffered() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return len(c.plain) > 0 || c.end > c.start || c.rerr != nil
}

// release gives the read buffer back to its pool if nothing in it is
// left to read: no plaintext, no received bytes, not even part of a
// record (a read that timed out keeps those). A large buffer is read only
// to its record's end, so once the record is read it is released.
func (c *Conn) release() {
	if c.in == nil || len(c.plain) > 0 || c.start != c.end {
		return
	}
	if len(c.in) > smallBuf {
		large.Put((*[hdrLen + maxSealed]byte)(c.in))
	} else {
		small.Put((*[smallBuf]byte)(c.in))
	}
	c.in, c.start, c.end = nil, 0, 0
}

// readRecord opens the next record into c.plain, reading from raw as
// needed.
func (c *Conn) readRecord() error {
	if c.in == nil {
		c.in = small.Get().(*[smallBuf]byte)[:]
	}
	for {
		limit := len(c.in)
		if c.end-c.start >= hdrLen {
			hdr := c.in[c.start : c.start+hdrLen]
			n := int(binary.BigEndian.Uint16(hdr))
			if n < tagLen || n > maxSealed {
				return c.fail(fmt.Errorf("%w: record length %d", ErrTampered, n))
			}
			need := hdrLen + n
			if c.end-c.start >= need {
				body := c.in[c.start+hdrLen : c.start+need]
				pt, err := c.rx.Decrypt(body[:0], hdr, body)
				if err != nil {
					return c.fail(fmt.Errorf("%w: %w", ErrTampered, err))
				}
				c.start += need
				c.plain = pt
				return nil
			}
			if need > len(c.in)-c.start {
				c.compact(need)
			}
			if len(c.in) > smallBuf {
				limit = c.start + need
			}
		} else if c.start > 0 && c.start == c.end {
			c.start, c.end = 0, 0
		} else if c.start > 0 && len(c.in)-c.end < hdrLen {
			c.compact(0)
		}
		m, err := c.raw.Read(c.in[c.end:limit])
		c.end += m
		if err != nil && m == 0 {
			if errors.Is(err, io.EOF) {
				if c.end > c.start {
					err = io.ErrUnexpectedEOF
				}
				c.rerr = err
			}
			return err
		}
	}
}

// compact moves the unopened bytes to the front of the buffer, into a
// large one if a record of need bytes will not fit the small one.
func (c *Conn) compact(need int) {
	dst := c.in
	if need > smallBuf && len(c.in) == smallBuf {
		dst = large.Get().(*[hdrLen + maxSealed]byte)[:]
	}
	c.end = copy(dst, c.in[c.start:c.end])
	c.start = 0
	if len(dst) != len(c.in) {
		small.Put((*[smallBuf]byte)(c.in))
	}
	c.in = dst
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
	// Most writes are a few dozen bytes (an ack's answer, a receipt): they
	// are sealed in a small buffer. A large one each, allocated afresh
	// after each collection had emptied the pool, was most of what a quiet
	// host of 500 sessions allocated (1.4 MB a second), and so what paced
	// its collections.
	if hdrLen+len(p)+tagLen <= smallBuf {
		buf := small.Get().(*[smallBuf]byte)
		defer small.Put(buf)
		return c.seal(buf[:], p)
	}
	buf := large.Get().(*[hdrLen + maxSealed]byte)
	defer large.Put(buf)
	return c.seal(buf[:], p)
}

// seal writes p in records sealed in buf, which holds the largest of
// them. The caller holds c.wmu.
func (c *Conn) seal(buf, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+MaxRecord)]
		b := binary.BigEndian.AppendUint16(buf[:0], uint16(len(chunk)+tagLen))
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
