package fedsvc

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/federation/fedstore"
)

// Run reconciles every interval until ctx ends.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("federated services round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile makes one pass over the federated services: it finishes
// deletes, divides the replicas again when a member's health moved it in
// or out of the division (failover past the grace, or back), sends each
// ready member the share it has not taken, and deletes the service at
// ready members left without a share.
func (c *Controller) Reconcile(ctx context.Context) error {
	vs, revs, err := c.cfg.Store.ListServices(ctx)
	if err != nil {
		return err
	}
	healths, err := c.cfg.Store.Healths(ctx)
	if err != nil {
		return err
	}
	members, err := c.members(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, v := range vs {
		if err := c.reconcileOne(ctx, v, revs[i], healths, members); err != nil && !errors.Is(err, fedstore.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) reconcileOne(ctx context.Context, v fedstore.Service, rev int64, healths map[string]fedapi.Health, members fedplace.Members) error {
	if v.Deleting {
		return c.finishDelete(ctx, v, rev)
	}
	shares, reason, ok := fedplace.Spread(fedplace.Resolve(v.Placement, members), v.Replicas, healths, c.cfg.Now())
	if ok && !maps.Equal(shares, v.Decision.Shares) {
		was := fedplace.FormatShares(v.Decision.Shares)
		var moved fedstore.Service
		err := c.update(ctx, v.Name, func(cur *fedstore.Service) bool {
			if cur.Decision.Seq != v.Decision.Seq {
				return false
			}
			c.setDecision(cur, shares, reason+"; was "+was)
			moved = *cur
			return true
		})
		if err != nil {
			return err
		}
		if moved.Name != "" {
			c.metrics.divisions.WithLabelValues(causeHealth).Inc()
			c.event(ctx, moved, "replicas divided again: "+moved.Decision.Reason)
		}
	}
	return c.sync(ctx, v.Name, healths)
}
