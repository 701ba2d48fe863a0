package rooms

import "sort"

// history keeps the newest packets a host sent for a room, so that members
// can fetch what multicast did not bring. It holds at most cap packets;
// each packet holds the records first..first+n-1. Not safe for concurrent
// use: the Sequencer's lock guards it.
type history struct {
	ring  []histPacket
	start int // index of the oldest packet
	len   int
}

type histPacket struct {
	first uint64
	n     uint64
	pkt   []byte
}

func newHistory(capacity int) *history {
	return &history{ring: make([]histPacket, capacity)}
}

func (h *history) at(i int) *histPacket { return &h.ring[(h.start+i)%len(h.ring)] }

// add records a packet; first must follow the previous packet's records.
func (h *history) add(first, n uint64, pkt []byte) {
	if h.len == len(h.ring) {
		h.start = (h.start + 1) % len(h.ring)
		h.len--
	}
	*h.at(h.len) = histPacket{first: first, n: n, pkt: pkt}
	h.len++
}

// oldest returns the lowest sequence number held, or 0 if none is.
func (h *history) oldest() uint64 {
	if h.len == 0 {
		return 0
	}
	return h.at(0).first
}

// from calls yield with each packet holding records from seq up to
// (excluding) end, in order, until yield returns false.
func (h *history) from(seq, end uint64, yield func(pkt []byte) bool) {
	i := sort.Search(h.len, func(i int) bool {
		p := h.at(i)
		return p.first+p.n > seq
	})
	for ; i < h.len; i++ {
		p := h.at(i)
		if p.first >= end || !yield(p.pkt) {
			return
		}
	}
}
