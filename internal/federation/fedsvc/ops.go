package fedsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/manifest"
)

// The rollout verbs through the federation. What the federated object
// holds (replicas, the template, the update policy's pause) changes there
// and is applied again, so that the division is made again and every
// member is sent the same manifest: a later division sends nothing the
// user undid. What only a member holds (a canary's promotion) is
// forwarded to every member with a share.

// Scale sets the federated service's replicas and divides them again.
func (c *Controller) Scale(ctx context.Context, name string, replicas int32) (*persysv1.ServiceView, error) {
	if replicas < 0 || replicas > manifest.MaxReplicas {
		return nil, httperr.Field("replicas", fmt.Sprintf("must be between 0 and %d, got %d", manifest.MaxReplicas, replicas))
	}
	return c.reapply(ctx, name, func(doc map[string]any, pl *fedapi.Placement) error {
		if len(pl.Counts) > 0 {
			return httperr.Field("replicas", "the placement gives exact counts per cluster (placement.counts); apply the manifest with new counts instead")
		}
		spec(doc)["replicas"] = replicas
		return nil
	})
}

// SetPaused pauses or resumes the federated service's update at every
// member: spec.update.paused changes in the federated manifest.
func (c *Controller) SetPaused(ctx context.Context, name string, paused bool) (*persysv1.ServiceView, error) {
	return c.reapply(ctx, name, func(doc map[string]any, _ *fedapi.Placement) error {
		s := spec(doc)
		u, _ := s["update"].(map[string]any)
		if u == nil {
			u = map[string]any{}
			s["update"] = u
		}
		u["paused"] = paused
		return nil
	})
}

// Undo returns the federated service to an earlier template: the member
// whose history the federation shows (the largest share) goes back to
// revision to (0: the previous one) by its own rules, and the template it
// then runs becomes the federated one, sent to every member.
func (c *Controller) Undo(ctx context.Context, name string, to uint64) (*persysv1.ServiceView, error) {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	best := largestShare(v.Decision.Shares)
	if best == "" {
		return nil, httperr.New(http.StatusConflict, "service "+name+" has no member with a share to go back at")
	}
	mc, err := c.pool.Client(ctx, best)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", best, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	mv, err := mc.RolloutUndo(cctx, name, to)
	c.metrics.call("undo", err)
	if err != nil {
		return nil, memberErr(best, err)
	}
	back := manifest.FromService(name, nil, mv.GetService().GetSpec())
	tmpl, err := json.Marshal(back.Spec.Template)
	if err != nil {
		return nil, err
	}
	var t any
	if err := json.Unmarshal(tmpl, &t); err != nil {
		return nil, err
	}
	return c.reapply(ctx, name, func(doc map[string]any, _ *fedapi.Placement) error {
		spec(doc)["template"] = t
		return nil
	})
}

// Promote lets a canary update go on at every member with a share; a
// member not reached is named in the error (promote again).
func (c *Controller) Promote(ctx context.Context, name string) (*persysv1.ServiceView, error) {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	var errs []error
	for _, cl := range slices.Sorted(maps.Keys(v.Decision.Shares)) {
		if v.Decision.Shares[cl] == 0 {
			continue
		}
		mc, err := c.pool.Client(ctx, cl)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
			_, err = mc.RolloutOp(cctx, name, "promote")
			cancel()
			c.metrics.call("promote", err)
		}
		if err != nil {
			errs = append(errs, memberErr(cl, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c.Get(ctx, name, false)
}

// reapply edits the stored manifest and applies it again with its
// placement, as a user applying the edited file would.
func (c *Controller) reapply(ctx context.Context, name string, edit func(doc map[string]any, pl *fedapi.Placement) error) (*persysv1.ServiceView, error) {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	if v.Deleting {
		return nil, httperr.New(http.StatusConflict, "service "+name+" is being deleted")
	}
	var doc map[string]any
	if err := json.Unmarshal(v.Manifest, &doc); err != nil {
		return nil, fmt.Errorf("service %s: stored manifest: %w", name, err)
	}
	if spec(doc) == nil {
		return nil, errors.New("service " + name + ": stored manifest has no spec")
	}
	pl := v.Placement
	if err := edit(doc, &pl); err != nil {
		return nil, err
	}
	doc["placement"] = pl
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	resp, err := c.Apply(ctx, body)
	if err != nil {
		return nil, err
	}
	return resp.GetService(), nil
}

func spec(doc map[string]any) map[string]any {
	s, _ := doc["spec"].(map[string]any)
	return s
}

// largestShare is the cluster with the largest share, the first by name
// among equals; "" when none has one.
func largestShare(shares fedapi.Shares) string {
	best := ""
	for _, cl := range slices.Sorted(maps.Keys(shares)) {
		if shares[cl] > 0 && (best == "" || shares[cl] > shares[best]) {
			best = cl
		}
	}
	return best
}

// memberErr names the member in its refusal, keeping the member's code
// and fields (a 4xx of the member is the caller's to fix); an
// unreachable member is 503.
func memberErr(cluster string, err error) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return httperr.New(http.StatusServiceUnavailable, "cluster "+cluster+": "+err.Error())
	}
	out := &httperr.Error{Code: ae.Code, Message: "cluster " + cluster + ": " + ae.Message}
	for _, f := range ae.Fields {
		out.Fields = append(out.Fields, httperr.FieldError{Field: f.Field, Reason: f.Reason})
	}
	return out
}
