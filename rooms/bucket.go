package rooms

import "time"

// A member may send nackBurst NACKs at once and nackRate a second after:
// far above what repairing a lossy link takes, far below what could make
// the host flood the room with repairs.
const (
	nackRate  = 50
	nackBurst = 20
)

// bucket is a token bucket. Not safe for concurrent use.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

// allow takes a token if one is left at now.
func (b *bucket) allow(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
