package fedsvc

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
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
	cause := causeHealth
	if v.Placement.Offload {
		capped, err := c.learnCaps(ctx, v, healths)
		if err != nil {
			return err
		}
		if capped {
			cause = causeOffload
			if v, _, err = c.cfg.Store.GetService(ctx, v.Name); err != nil {
				return err
			}
		}
	}
	resolved := fedplace.Resolve(v.Placement, members)
	now := c.cfg.Now()
	shares, reason, ok := fedplace.Spread(resolved, v.Replicas, healths, now)
	if ok && v.Placement.Offload {
		var notes []string
		shares, notes = fedplace.Offload(resolved, shares, v.Caps, v.Revision, healths, now)
		reason = fedplace.OffloadReason(shares, reason, notes)
	}
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
			c.metrics.divisions.WithLabelValues(cause).Inc()
			c.event(ctx, moved, "replicas divided again: "+moved.Decision.Reason)
		}
	}
	return c.sync(ctx, v.Name, healths)
}

// learnCaps asks each ready member that took its share of v's current
// division, and holds no cap for this revision yet, how many replicas its
// placement left pending because no node fits them; each such member gets
// a cap of the rest, stored. capped reports whether one was stored.
func (c *Controller) learnCaps(ctx context.Context, v fedstore.Service, healths map[string]fedapi.Health) (capped bool, err error) {
	learnt := map[string]fedapi.ServiceCap{}
	for _, cl := range slices.Sorted(maps.Keys(v.Decision.Shares)) {
		share := v.Decision.Shares[cl]
		if k, ok := v.Caps[cl]; (ok && k.Revision == v.Revision) || share == 0 || healths[cl].State != fedapi.StateReady || v.Sent[cl] != v.Decision.Seq {
			continue
		}
		n, why, err := c.unfit(ctx, cl, v.Name, share)
		if err != nil {
			c.cfg.Logger.Warn("member's replicas not read for offload", "service", v.Name, "cluster", cl, "err", err)
			continue
		}
		if n > 0 {
			learnt[cl] = fedapi.ServiceCap{Replicas: share - n, Revision: v.Revision, Reason: cl + " refused " + strconv.Itoa(n) + ": " + why, At: c.cfg.Now()}
		}
	}
	if len(learnt) == 0 {
		return false, nil
	}
	err = c.update(ctx, v.Name, func(cur *fedstore.Service) bool {
		if cur.Revision != v.Revision || cur.Decision.Seq != v.Decision.Seq {
			return false
		}
		if cur.Caps == nil {
			cur.Caps = map[string]fedapi.ServiceCap{}
		}
		maps.Copy(cur.Caps, learnt)
		return true
	})
	for cl, k := range learnt {
		c.cfg.Logger.Info("member cannot hold its whole share", "service", v.Name, "cluster", cl, "holds", k.Replicas, "reason", k.Reason)
	}
	return err == nil, err
}

// unfit counts the replicas of name at cluster that its placement left
// pending because no node fits them, with the first one's reason; a
// member with share replicas ready has none.
func (c *Controller) unfit(ctx context.Context, cluster, name string, share int) (int, string, error) {
	mv, err := c.memberView(ctx, cluster, name, false)
	if err != nil {
		return 0, "", err
	}
	if int(mv.GetProgress().GetReady()) >= share {
		return 0, "", nil
	}
	mc, err := c.pool.Client(ctx, cluster)
	if err != nil {
		return 0, "", err
	}
	n, why := 0, ""
	for _, r := range mv.GetReplicas() {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		wv, err := mc.GetWorkload(cctx, r, false)
		cancel()
		if err != nil {
			continue // gone meanwhile
		}
		if reason, ok := fedplace.CapacityRefusal(wv); ok {
			if n++; why == "" {
				why = reason
			}
		}
	}
	return n, why, nil
}
