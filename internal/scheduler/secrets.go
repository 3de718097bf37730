package scheduler

// The callback by which a changed secret (internal/secretsvc) wakes the
// workloads that waited for it.

import (
	"sort"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secretsvc"
)

// wakeSecretWaiters retries at once, from attempt one, every workload
// whose last attempt failed for lack of a secret that secret now may
// supply: the change that can alter the answer triggers the retry, not
// the backoff timer.
func (s *Scheduler) wakeSecretWaiters(secret string) {
	var names []string
	s.cache.Each(func(name string, w *persysv1.Workload, lastReason persysv1.FailureReason) {
		if (lastReason != persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND &&
			lastReason != persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED) || w.GetDeleting() {
			return
		}
		if secretsvc.References(w.GetSpec(), secret) {
			names = append(names, name)
		}
	})
	sort.Strings(names)
	for _, name := range names {
		s.log.Info("secret changed; retrying workload that waited for it", "workload", name, "secret", secret)
		s.resetAttempts(name)
		s.queue.Add(name)
	}
}
