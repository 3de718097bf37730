package audit

import (
	"sync"
	"time"
)

// suppressLogGap is how often suppressed events are reported.
const suppressLogGap = 10 * time.Second

// bucket is a token bucket.
type bucket struct {
	mu           sync.Mutex
	rate, burst  float64
	tokens       float64
	last         time.Time
	suppressed   int
	lastReported time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

// allow takes a token at now; when there is none it counts a suppression
// and returns, every suppressLogGap, how many to report.
func (b *bucket) allow(now time.Time) (ok bool, report int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	b.suppressed++
	if now.Sub(b.lastReported) >= suppressLogGap {
		report, b.suppressed, b.lastReported = b.suppressed, 0, now
	}
	return false, report
}
