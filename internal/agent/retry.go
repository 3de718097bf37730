package agent

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// retryJitter spreads each wait by ±20%: agents that lost the same
// scheduler leader at the same moment would otherwise register with the
// new one in lockstep, try after try.
const retryJitter = 0.2

// minLeaseRetry bounds how often a node whose lease may be alive retries.
const minLeaseRetry = 100 * time.Millisecond

// retry paces the tries of one failing sequence (registrations,
// heartbeats, runtime watches): exponential from a base, doubling up to
// maxBackoff (or the base when that is larger), each wait jittered. The
// zero value is ready; reset starts a new sequence. It belongs to one
// goroutine.
type retry struct {
	n int // waits handed out since the last reset
	b backoff.ExponentialBackOff
}

func (r *retry) reset() { *r = retry{} }

// next returns the wait before the next try (see leaseRetryLimit for ttl
// and since; zero ttl: no lease).
func (r *retry) next(base, ttl, since time.Duration) time.Duration {
	limit := leaseRetryLimit(base, ttl, since)
	// MaxInterval caps the interval before jitter: keep the jittered wait
	// within limit.
	top := max(time.Duration(float64(limit)/(1+retryJitter)), time.Nanosecond)
	first := min(base, top)
	if r.b.InitialInterval != first || r.b.MaxInterval != top {
		// The limit moved (a lease told or expired): same place in the
		// sequence, new bounds.
		r.b = backoff.ExponentialBackOff{InitialInterval: first, RandomizationFactor: retryJitter, Multiplier: 2, MaxInterval: top}
		for range r.n {
			r.b.NextBackOff()
		}
	}
	r.n++
	return min(r.b.NextBackOff(), limit)
}

// leaseRetryLimit is the longest wait between tries: maxBackoff (or base
// when larger), except while the node's lease (TTL ttl, renewed since ago)
// may still be alive: then ttl/8, so that several tries fall inside the
// TTL. When a scheduler leader dies, its replicas need a moment to elect
// another; a doubling backoff from the heartbeat interval let the leases
// expire meanwhile (the new leader then lost every node and moved their
// workloads). Once the lease is surely gone, the usual backoff takes over.
func leaseRetryLimit(base, ttl, since time.Duration) time.Duration {
	limit := max(base, maxBackoff)
	if ttl <= 0 || since >= ttl {
		return limit
	}
	return min(limit, max(ttl/8, minLeaseRetry))
}
