package scheduler

// The secret calls of ControlService: a thin adapter over internal/secretsvc
// (which checks the caller's permission itself), plus the callback by which
// a changed secret wakes the workloads that waited for it.

import (
	"context"
	"sort"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secretsvc"
)

func (c *controlService) PutSecret(ctx context.Context, req *persysv1.PutSecretRequest) (*persysv1.SecretInfo, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.secrets.Put(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) GetSecret(ctx context.Context, req *persysv1.GetSecretRequest) (*persysv1.SecretInfo, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.secrets.Get(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) ListSecrets(ctx context.Context, req *persysv1.ListSecretsRequest) (*persysv1.ListSecretsResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.secrets.List(ctx, req)
	return resp, toStatus(err)
}

func (c *controlService) DeleteSecret(ctx context.Context, req *persysv1.DeleteSecretRequest) (*persysv1.DeleteSecretResponse, error) {
	if err := c.s.serving(ctx); err != nil {
		return nil, err
	}
	resp, err := c.s.secrets.Delete(ctx, req)
	return resp, toStatus(err)
}

// wakeSecretWaiters retries at once, from attempt one, every workload
// whose last attempt failed for lack of a secret that secret now may
// supply: the change that can alter the answer triggers the retry, not
// the backoff timer.
func (s *Scheduler) wakeSecretWaiters(secret string) {
	var names []string
	s.mu.Lock()
	for name, e := range s.workloads {
		if (e.lastReason != persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND &&
			e.lastReason != persysv1.FailureReason_FAILURE_REASON_POLICY_DENIED) || e.w.GetDeleting() {
			continue
		}
		if secretsvc.References(e.w.GetSpec(), secret) {
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		s.log.Info("secret changed; retrying workload that waited for it", "workload", name, "secret", secret)
		s.resetAttempts(name)
		s.queue.Add(name)
	}
}
