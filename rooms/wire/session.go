package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// Session frame types, on the session stream (rooms/secure) between a member and a room's
// host. ONLY APPEND.
const (
	FrameHello   = 1 // member → host: the room to join, the nick, where to resume
	FrameWelcome = 2 // host → member: the room's key and position
	FrameRefuse  = 3 // host → member: the join is refused, and why
	FrameSay     = 4 // member → host: a line to sequence
	FrameSaid    = 5 // host → member: the place the line got, or why it got none
	FrameFetch   = 6 // member → host: send the batches holding these sequence numbers
	// 7 carried one-packet data, retired before release. Never reuse.
	FrameGone   = 8  // host → member: these sequence numbers are no longer held
	FrameBatch  = 9  // host → member: one signed batch, as the log holds it
	FrameAck    = 10 // member → host: what it has delivered, and the loss it sees; host → member: the newest line logged
	FrameStream = 11 // member → host: send me the room over this session, or stop; host → member: granted or refused
	FrameSeen   = 12 // host → member: how many members hold a line it said
	FrameRekey  = 13 // host → member: the room's new epoch key
)

// A frame is a uint32 length, then that many bytes: a type byte and its
// body. The length is bounded by MaxFrame.

// Hello opens a session.
//
//	room   uint8 length, ≤ MaxRoomName
//	nick   uint8 length, ≤ MaxNick
//	resume uint64: the next sequence number the member wants, 0 for "from now"
//	cred   uint8 length, ≤ MaxCred: what the room's access asks for, or empty
//	       (an invite token, or a passphrase proof bound to the session)
type Hello struct {
	Room   string
	Nick   string
	Resume uint64
	Cred   []byte
}

// MaxCred bounds a Hello's credential: a token or a MAC is far shorter.
const MaxCred = 64

// Welcome admits a member.
//
//	room id    8 bytes
//	epoch      uint64
//	epoch key  32 bytes
//	next seq   uint64: the first sequence number the member will be sent
//	block      uint64: the newest block number of the epoch
//	session    uint64, nonzero: this session's id, which the member's NACKs carry
//	data group addr
//	MAC slot   uint8: the member's place in a block's MACs, < MaxMACSlots, or NoMACSlot
//	MAC key    32 bytes: the key of the member's MACs (zero with NoMACSlot)
//	members    uint16 count, ≤ MaxMembers, then each: key id (8 bytes), nick (uint8 length)
type Welcome struct {
	Room    [RoomIDLen]byte
	Epoch   uint64
	Key     [32]byte
	Next    uint64
	Block   uint64 // the host's newest block: the member awaits the ones after it
	Session uint64 // names the session in the member's NACKs, so replays of old ones are dropped
	Group   netip.AddrPort
	// MACSlot and MACKey let the member check a small block by its own
	// MAC rather than by the host's signature (AppendBlockMACs). The key
	// is fresh for each session and travels only inside it.
	MACSlot uint8
	MACKey  [32]byte
	Members []MemberInfo
}

// MemberInfo names one member of a room.
type MemberInfo struct {
	KeyID [KeyIDLen]byte
	Nick  string
}

// MaxMembers bounds the members of one room.
const MaxMembers = 1024

// Refuse ends a join: text (uint16 length, ≤ MaxText) says why.
type Refuse struct{ Reason string }

// Say asks the host to sequence a line: request id uint32, text (uint16
// length, ≤ MaxText).
type Say struct {
	ID   uint32
	Text string
}

// Said answers a Say: request id uint32, sequence uint64 (0 when refused),
// error text (uint16 length, empty on success).
type Said struct {
	ID    uint32
	Seq   uint64
	Error string
}

// Fetch asks for the batches holding sequence numbers From..From+Count-1.
// From uint64, Count uint16.
type Fetch struct {
	From  uint64
	Count uint16
}

// Gone answers a Fetch, or a resume, for records the host no longer holds:
// From uint64, To uint64 (exclusive). The member declares the gap to its
// user instead of waiting for it forever.
type Gone struct {
	From, To uint64
}

// BatchFrame carries one signed batch: the host's answer to a Fetch, the
// history a joining member asked for, and the stream of a member that
// multicast does not reach. Body: the batch bytes, ≤ MaxBatch.
type BatchFrame struct{ Batch []byte }

// Ack, from a member, reports, once a second and shortly after new lines
// arrive, the highest
// sequence number up to which the member holds everything (Seq uint64), and
// the share of multicast shards it lost lately in thousandths (Loss uint16),
// from which the host sizes its proactive parity. The host answers each
// with an Ack of its own whose Seq is the newest sequence number it has
// logged (Loss 0): a keepalive for both sides' idle timers, and the tail
// of the stream for a member that multicast does not reach.
type Ack struct {
	Seq  uint64
	Loss uint16
}

// Stream, from a member, asks the host to send the room's batches over
// the session, because multicast does not reach the member (1) or loses
// more than it can repair well (2), or to stop (0) once multicast is
// back. The host answers each request to start with a Stream of its own:
// 1, granted, or 0, refused. It refuses only a request for loss (2), when
// most members report the same loss: then the loss is the host's own link,
// which a copy of the room per member over that link would only make worse.
// Body: mode uint8, 0..2.
type Stream struct {
	On    bool
	Lossy bool // with On, from a member: asked for loss, not silence; the host may refuse
}

// Seen tells a member how many of the room's members held its line Seq
// when the host last counted: seq uint64, seen uint16, of uint16.
type Seen struct {
	Seq      uint64
	Seen, Of uint16
}

// Rekey hands a member the room's key for a new epoch, after a member
// left or was removed, or the old key's budget ran out: epoch uint64, key
// 32 bytes. Blocks are numbered afresh from 1 in the new epoch.
type Rekey struct {
	Epoch uint64
	Key   [32]byte
}

// Frame is any decoded session frame; its dynamic type is one of the
// frame structs above.
type Frame any

// AppendFrame appends the framed encoding of f to b.
func AppendFrame(b []byte, f Frame) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	var err error
	switch f := f.(type) {
	case *Hello:
		if len(f.Room) > MaxRoomName || len(f.Nick) > MaxNick || len(f.Cred) > MaxCred {
			return b[:start], fmt.Errorf("hello: %w", ErrTooLong)
		}
		b = append(b, FrameHello)
		b = appendStr8(b, f.Room)
		b = appendStr8(b, f.Nick)
		b = appendU64(b, f.Resume)
		b = append(b, byte(len(f.Cred)))
		b = append(b, f.Cred...)
	case *Welcome:
		if len(f.Members) > MaxMembers {
			return b[:start], fmt.Errorf("welcome: %w: %d members", ErrTooLong, len(f.Members))
		}
		if err = checkAddrPort(f.Group); err != nil {
			return b[:start], err
		}
		if f.Session == 0 {
			return b[:start], fmt.Errorf("welcome: %w: session 0", ErrInvalid)
		}
		if f.MACSlot >= MaxMACSlots && f.MACSlot != NoMACSlot {
			return b[:start], fmt.Errorf("welcome: %w: MAC slot %d", ErrInvalid, f.MACSlot)
		}
		b = append(b, FrameWelcome)
		b = append(b, f.Room[:]...)
		b = appendU64(b, f.Epoch)
		b = append(b, f.Key[:]...)
		b = appendU64(b, f.Next)
		b = appendU64(b, f.Block)
		b = appendU64(b, f.Session)
		b = appendAddrPort(b, f.Group)
		b = append(b, f.MACSlot)
		b = append(b, f.MACKey[:]...)
		b = appendU16(b, uint16(len(f.Members)))
		for _, m := range f.Members {
			if len(m.Nick) > MaxNick {
				return b[:start], fmt.Errorf("welcome: %w", ErrTooLong)
			}
			b = append(b, m.KeyID[:]...)
			b = appendStr8(b, m.Nick)
		}
	case *Refuse:
		if len(f.Reason) > MaxText {
			return b[:start], fmt.Errorf("refuse: %w", ErrTooLong)
		}
		b = append(b, FrameRefuse)
		b = appendBytes16(b, []byte(f.Reason))
	case *Say:
		if len(f.Text) > MaxText {
			return b[:start], fmt.Errorf("say: %w", ErrTooLong)
		}
		b = append(b, FrameSay)
		b = appendU32(b, f.ID)
		b = appendBytes16(b, []byte(f.Text))
	case *Said:
		if len(f.Error) > MaxText {
			return b[:start], fmt.Errorf("said: %w", ErrTooLong)
		}
		b = append(b, FrameSaid)
		b = appendU32(b, f.ID)
		b = appendU64(b, f.Seq)
		b = appendBytes16(b, []byte(f.Error))
	case *Fetch:
		b = append(b, FrameFetch)
		b = appendU64(b, f.From)
		b = appendU16(b, f.Count)
	case *Gone:
		if f.To <= f.From {
			return b[:start], fmt.Errorf("gone: %w: empty range", ErrInvalid)
		}
		b = append(b, FrameGone)
		b = appendU64(b, f.From)
		b = appendU64(b, f.To)
	case *BatchFrame:
		if len(f.Batch) > MaxBatch {
			return b[:start], fmt.Errorf("batch frame: %w", ErrTooLong)
		}
		b = append(b, FrameBatch)
		b = append(b, f.Batch...)
	case *Ack:
		b = append(b, FrameAck)
		b = appendU64(b, f.Seq)
		b = appendU16(b, f.Loss)
	case *Stream:
		mode := byte(0)
		switch {
		case f.On && f.Lossy:
			mode = 2
		case f.On:
			mode = 1
		case f.Lossy:
			return b[:start], fmt.Errorf("stream: %w: lossy without on", ErrInvalid)
		}
		b = append(b, FrameStream, mode)
	case *Rekey:
		b = append(b, FrameRekey)
		b = appendU64(b, f.Epoch)
		b = append(b, f.Key[:]...)
	case *Seen:
		b = append(b, FrameSeen)
		b = appendU64(b, f.Seq)
		b = appendU16(b, f.Seen)
		b = appendU16(b, f.Of)
	default:
		return b[:start], fmt.Errorf("%w: frame %T", ErrType, f)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, nil
}

// ParseFrame decodes the body of one frame (type byte first, without the
// length prefix).
func ParseFrame(b []byte) (Frame, error) {
	if len(b) == 0 {
		return nil, ErrShort
	}
	r := reader{b: b[1:]}
	var f Frame
	switch b[0] {
	case FrameHello:
		h := &Hello{Room: r.str8(MaxRoomName), Nick: r.str8(MaxNick)}
		h.Resume = r.u64()
		if n := int(r.u8()); n > MaxCred {
			r.fail(ErrTooLong)
		} else if n > 0 {
			h.Cred = append([]byte(nil), r.take(n)...)
		}
		f = h
	case FrameWelcome:
		w := &Welcome{}
		copy(w.Room[:], r.take(RoomIDLen))
		w.Epoch = r.u64()
		copy(w.Key[:], r.take(len(w.Key)))
		w.Next = r.u64()
		w.Block = r.u64()
		if w.Session = r.u64(); r.err == nil && w.Session == 0 {
			r.fail(ErrInvalid)
		}
		w.Group = r.addrPort()
		if w.MACSlot = r.u8(); r.err == nil && w.MACSlot >= MaxMACSlots && w.MACSlot != NoMACSlot {
			r.fail(ErrInvalid)
		}
		copy(w.MACKey[:], r.take(len(w.MACKey)))
		n := int(r.u16())
		if n > MaxMembers {
			r.fail(ErrTooLong)
		}
		for i := 0; i < n && r.err == nil; i++ {
			var m MemberInfo
			copy(m.KeyID[:], r.take(KeyIDLen))
			m.Nick = r.str8(MaxNick)
			w.Members = append(w.Members, m)
		}
		f = w
	case FrameRefuse:
		f = &Refuse{Reason: string(r.bytes16(MaxText))}
	case FrameSay:
		s := &Say{ID: r.u32()}
		s.Text = string(r.bytes16(MaxText))
		f = s
	case FrameSaid:
		s := &Said{ID: r.u32(), Seq: r.u64()}
		s.Error = string(r.bytes16(MaxText))
		f = s
	case FrameFetch:
		fe := &Fetch{From: r.u64()}
		fe.Count = r.u16()
		f = fe
	case FrameGone:
		g := &Gone{From: r.u64()}
		g.To = r.u64()
		if r.err == nil && g.To <= g.From {
			r.fail(ErrInvalid)
		}
		f = g
	case FrameBatch:
		p := r.take(len(r.b))
		if len(p) > MaxBatch {
			r.fail(ErrTooLong)
		}
		f = &BatchFrame{Batch: p}
	case FrameAck:
		a := &Ack{Seq: r.u64()}
		a.Loss = r.u16()
		f = a
	case FrameStream:
		mode := r.u8()
		if mode > 2 {
			r.fail(ErrInvalid)
		}
		f = &Stream{On: mode >= 1, Lossy: mode == 2}
	case FrameRekey:
		rk := &Rekey{Epoch: r.u64()}
		copy(rk.Key[:], r.take(len(rk.Key)))
		f = rk
	case FrameSeen:
		sn := &Seen{Seq: r.u64()}
		sn.Seen, sn.Of = r.u16(), r.u16()
		f = sn
	default:
		return nil, fmt.Errorf("%w: frame %d", ErrType, b[0])
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("frame %d: %w", b[0], err)
	}
	return f, nil
}

// ReadFrame reads one frame from r into buf (grown as needed, up to
// MaxFrame) and decodes it. The returned frame may alias buf.
func ReadFrame(r io.Reader, buf []byte) (Frame, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrame {
		return nil, buf, fmt.Errorf("frame of %d bytes: %w", n, ErrTooLong)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			// The frame began with its length: a stream that ends here is
			// cut short, not closed between frames.
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, fmt.Errorf("frame body: %w", err)
	}
	f, err := ParseFrame(buf)
	return f, buf, err
}
