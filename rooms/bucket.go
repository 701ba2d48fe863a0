package rooms

import (
	"net/netip"
	"sync"
	"time"
)

// A member may send nackBurst NACKs at once and nackRate a second after:
// far above what repairing a lossy link takes, far below what could make
// the host flood the room with repairs.
const (
	nackRate  = 50
	nackBurst = 20
)

// A source address may open joinBurst join sessions at once and joinRate
// a second after: a session handshake (three X25519 operations and an
// Ed25519 verification) costs the host real CPU.
const (
	joinRate    = 5
	joinBurst   = 10
	joinSources = 1024
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

// sourceLimiter keeps a token bucket per source address, for at most
// maxSources sources: when full, it forgets one at random, so that a flood
// from spoofed addresses costs bounded memory and cannot lock out a source
// for long. Safe for concurrent use.
type sourceLimiter struct {
	mu          sync.Mutex
	rate, burst float64
	maxSources  int
	buckets     map[netip.Addr]*bucket
}

func newSourceLimiter(rate, burst float64, maxSources int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, maxSources: maxSources, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token from src's bucket.
func (l *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= l.maxSources {
			for a := range l.buckets {
				delete(l.buckets, a)
				break
			}
		}
		b = &bucket{rate: l.rate, burst: l.burst}
		l.buckets[src] = b
	}
	return b.allow(now)
}
