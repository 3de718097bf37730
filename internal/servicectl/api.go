package servicectl

// The service calls of the ControlService, over the store: each writes
// the service with a transaction against the revision it read (retried
// a few times on conflict) and wakes the controller. The gRPC adapter
// validates the request's fields before calling.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

const writeAttempts = 5

// Apply creates the service or updates its spec and labels; the
// template is checked for who first (host access, secrets), as a
// workload's spec is.
func (c *Controller) Apply(ctx context.Context, who principal.Principal, req *persysv1.ApplyServiceRequest) (*persysv1.Service, string, error) {
	if err := c.cfg.Workloads.PrepareSpec(ctx, who, proto.CloneOf(req.GetSpec().GetTemplate())); err != nil {
		return nil, "", templateError(err)
	}
	name := req.GetName()
	now := timestamppb.New(c.cfg.Now())
	for range writeAttempts {
		cur, rev, err := c.st.GetService(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			svc := &persysv1.Service{Name: name, Uid: newUID(), Labels: req.GetLabels(), Spec: req.GetSpec(), Generation: 1,
				CreatedAt: now, UpdatedAt: now, AppliedBy: who.Name, AppliedRole: string(who.Role)}
			if _, err := c.st.CreateService(ctx, svc); errors.Is(err, store.ErrExists) {
				continue
			} else if err != nil {
				return nil, "", err
			}
			c.cfg.Events.Add(model.EventServiceCreated, &persysv1.Event{Workload: EventSubject(name), Message: "created by " + who.Name})
			c.Enqueue(name)
			return svc, "created", nil
		}
		if err != nil {
			return nil, "", err
		}
		if cur.GetDeleting() {
			return nil, "", status.Errorf(codes.FailedPrecondition, "service %q is being deleted; apply again once it is gone", name)
		}
		if proto.Equal(cur.GetSpec(), req.GetSpec()) && maps.Equal(cur.GetLabels(), req.GetLabels()) {
			return cur, "unchanged", nil
		}
		next := proto.CloneOf(cur)
		next.Labels, next.UpdatedAt = req.GetLabels(), now
		if !proto.Equal(cur.GetSpec(), req.GetSpec()) {
			if !proto.Equal(cur.GetSpec().GetTemplate(), req.GetSpec().GetTemplate()) {
				next.AppliedBy, next.AppliedRole = who.Name, string(who.Role)
			}
			next.Spec = req.GetSpec()
			next.Generation++
		}
		if _, err := c.st.UpdateService(ctx, next, rev); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, "", err
		}
		c.cfg.Events.Add(model.EventServiceUpdated, &persysv1.Event{Workload: EventSubject(name),
			Message: fmt.Sprintf("generation %d by %s", next.GetGeneration(), who.Name)})
		c.Enqueue(name)
		return next, "updated", nil
	}
	return nil, "", fmt.Errorf("apply service %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// modify applies edit to the stored service and writes it (retrying on
// conflict); edit may refuse with an error.
func (c *Controller) modify(ctx context.Context, name string, edit func(*persysv1.Service) error) (*persysv1.Service, error) {
	for range writeAttempts {
		cur, rev, err := c.st.GetService(ctx, name)
		if err != nil {
			return nil, err
		}
		next := proto.CloneOf(cur)
		if err := edit(next); err != nil {
			return nil, err
		}
		if proto.Equal(cur, next) {
			return cur, nil
		}
		next.UpdatedAt = timestamppb.New(c.cfg.Now())
		if _, err := c.st.UpdateService(ctx, next, rev); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		c.Enqueue(name)
		return next, nil
	}
	return nil, fmt.Errorf("service %q: %w: too many concurrent changes", name, store.ErrConflict)
}

func notDeleting(svc *persysv1.Service) error {
	if svc.GetDeleting() {
		return status.Errorf(codes.FailedPrecondition, "service %q is being deleted", svc.GetName())
	}
	return nil
}

// mayRun checks who against the service's template as applying it would
// (host access, secrets): scale, pause, resume and promote decide how
// many copies of it run and when, so they are applying it again, and an
// operator may not grow or push on a template only an admin could apply.
// Delete is not gated: it removes what the template asked of the hosts,
// as a workload's delete does (Kubernetes and Nomad gate creation, not
// removal). call names what was refused, for the message.
func (c *Controller) mayRun(ctx context.Context, who principal.Principal, svc *persysv1.Service, call string) error {
	if err := c.cfg.Workloads.PrepareSpec(ctx, who, proto.CloneOf(svc.GetSpec().GetTemplate())); err != nil {
		return fmt.Errorf("%s of service %q runs its template (applied by %s): %w", call, svc.GetName(), svc.GetAppliedBy(), templateError(err))
	}
	return nil
}

// Delete marks the service for deletion; the controller deletes its
// replicas and then its keys.
func (c *Controller) Delete(ctx context.Context, who principal.Principal, name string) error {
	_, err := c.modify(ctx, name, func(s *persysv1.Service) error {
		s.Deleting = true
		return nil
	})
	if err == nil {
		c.cfg.Events.Add(model.EventServiceDeleteRequested, &persysv1.Event{Workload: EventSubject(name), Message: "by " + who.Name})
	}
	return err
}

// Scale sets the service's replicas.
func (c *Controller) Scale(ctx context.Context, who principal.Principal, name string, replicas int32) (*persysv1.Service, error) {
	if replicas < 0 || replicas > manifest.MaxReplicas {
		return nil, &manifest.Error{Fields: []manifest.FieldError{{Field: "replicas",
			Reason: fmt.Sprintf("must be between 0 and %d, got %d", manifest.MaxReplicas, replicas)}}}
	}
	var from int32
	svc, err := c.modify(ctx, name, func(s *persysv1.Service) error {
		if err := notDeleting(s); err != nil {
			return err
		}
		if err := c.mayRun(ctx, who, s, "scale"); err != nil {
			return err
		}
		from = s.GetSpec().GetReplicas()
		if s.Spec == nil {
			s.Spec = &persysv1.ServiceSpec{}
		}
		if s.Spec.Replicas != replicas {
			s.Spec.Replicas = replicas
			s.Generation++
		}
		return nil
	})
	if err == nil && from != replicas {
		c.cfg.Events.Add(model.EventServiceScaled, &persysv1.Event{Workload: EventSubject(name),
			Message: fmt.Sprintf("%d → %d replicas by %s", from, replicas, who.Name)})
	}
	return svc, err
}

// SetPaused pauses or resumes the service's updates.
func (c *Controller) SetPaused(ctx context.Context, who principal.Principal, name string, paused bool) (*persysv1.Service, error) {
	svc, err := c.modify(ctx, name, func(s *persysv1.Service) error {
		if err := notDeleting(s); err != nil {
			return err
		}
		call := "resume"
		if paused {
			call = "pause"
		}
		if err := c.mayRun(ctx, who, s, call); err != nil {
			return err
		}
		if s.GetSpec().GetUpdate() == nil {
			return status.Errorf(codes.FailedPrecondition, "service %q has no update policy", name)
		}
		if s.Spec.Update.Paused != paused {
			s.Spec.Update.Paused = paused
			s.Generation++
		}
		return nil
	})
	if err == nil {
		t, verb := model.EventRolloutResumed, "resumed"
		if paused {
			t, verb = model.EventRolloutPaused, "paused"
		}
		c.cfg.Events.Add(t, &persysv1.Event{Workload: EventSubject(name), Message: verb + " by " + who.Name})
	}
	return svc, err
}

// currentRevision is the kept revision of svc's template, nil when the
// controller has not recorded it yet.
func (c *Controller) currentRevision(ctx context.Context, svc *persysv1.Service) (*persysv1.ServiceRevision, []*persysv1.ServiceRevision, error) {
	revs, err := c.st.ListServiceRevisions(ctx, svc.GetName())
	if err != nil {
		return nil, nil, err
	}
	hash := TemplateHash(svc.GetSpec().GetTemplate())
	for _, r := range revs {
		if r.GetTemplateHash() == hash {
			return r, revs, nil
		}
	}
	return nil, revs, nil
}

// Promote lets the current revision's canary update go on.
func (c *Controller) Promote(ctx context.Context, who principal.Principal, name string) (*persysv1.Service, error) {
	svc, _, err := c.st.GetService(ctx, name)
	if err != nil {
		return nil, err
	}
	cur, _, err := c.currentRevision(ctx, svc)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, status.Errorf(codes.Unavailable, "service %q: its current template has no revision yet; retry shortly", name)
	}
	out, err := c.modify(ctx, name, func(s *persysv1.Service) error {
		if err := notDeleting(s); err != nil {
			return err
		}
		if TemplateHash(s.GetSpec().GetTemplate()) != cur.GetTemplateHash() {
			return status.Errorf(codes.Aborted, "service %q changed its template meanwhile; look at rollout status again", name)
		}
		if err := c.mayRun(ctx, who, s, "promote"); err != nil {
			return err
		}
		if s.PromotedRevision != cur.GetNumber() {
			s.PromotedRevision = cur.GetNumber()
			s.Generation++ // a wait on the rollout waits for the controller to see it
		}
		return nil
	})
	if err == nil {
		c.cfg.Events.Add(model.EventRolloutPromoted, &persysv1.Event{Workload: EventSubject(name), Revision: cur.GetNumber(), Message: "by " + who.Name})
	}
	return out, err
}

// Undo returns the template to revision to (0: the newest kept revision
// older than the current one).
func (c *Controller) Undo(ctx context.Context, who principal.Principal, name string, to uint64) (*persysv1.Service, error) {
	svc, _, err := c.st.GetService(ctx, name)
	if err != nil {
		return nil, err
	}
	cur, revs, err := c.currentRevision(ctx, svc)
	if err != nil {
		return nil, err
	}
	var target *persysv1.ServiceRevision
	for _, r := range revs {
		switch {
		case to != 0 && r.GetNumber() == to:
			target = r
		case to == 0 && cur != nil && r.GetNumber() < cur.GetNumber():
			target = r // revs are oldest first: the last one wins
		}
	}
	if target == nil {
		kept := make([]uint64, 0, len(revs))
		for _, r := range revs {
			kept = append(kept, r.GetNumber())
		}
		return nil, &manifest.Error{Fields: []manifest.FieldError{{Field: "to_revision",
			Reason: fmt.Sprintf("no revision to return to (asked %d; kept: %v)", to, kept)}}}
	}
	// Going back is applying that template again: the caller must be
	// allowed what it asks of the hosts, whoever applied it first.
	if err := c.cfg.Workloads.PrepareSpec(ctx, who, proto.CloneOf(target.GetTemplate())); err != nil {
		return nil, fmt.Errorf("to_revision: revision %d's template: %w", target.GetNumber(), templateError(err))
	}
	out, err := c.modify(ctx, name, func(s *persysv1.Service) error {
		if err := notDeleting(s); err != nil {
			return err
		}
		if !proto.Equal(s.GetSpec().GetTemplate(), target.GetTemplate()) {
			s.Spec.Template = target.GetTemplate()
			s.AppliedBy, s.AppliedRole = target.GetAppliedBy(), target.GetAppliedRole()
			s.Generation++
		}
		return nil
	})
	if err == nil {
		c.cfg.Events.Add(model.EventRolloutUndone, &persysv1.Event{Workload: EventSubject(name), Revision: target.GetNumber(),
			Message: fmt.Sprintf("back to revision %d by %s", target.GetNumber(), who.Name)})
	}
	return out, err
}

// templateError names the fields of a refused template as a service
// manifest does (spec.template.container.image for a workload spec's
// spec.container.image).
func templateError(err error) error {
	var merr *manifest.Error
	if errors.As(err, &merr) {
		out := &manifest.Error{Fields: make([]manifest.FieldError, len(merr.Fields))}
		for k, f := range merr.Fields {
			out.Fields[k] = manifest.FieldError{Field: templateField(f.Field), Reason: f.Reason}
		}
		return out
	}
	var denied *principal.FieldDenied
	if errors.As(err, &denied) {
		return &principal.FieldDenied{Field: templateField(denied.Field), Reason: denied.Reason}
	}
	return err
}

func templateField(f string) string {
	if f == "" || f == "spec" {
		return "spec.template"
	}
	return "spec.template." + strings.TrimPrefix(f, "spec.")
}

// History lists the kept revisions, oldest first.
func (c *Controller) History(ctx context.Context, name string) ([]*persysv1.ServiceRevision, error) {
	if _, _, err := c.st.GetService(ctx, name); err != nil {
		return nil, err
	}
	return c.st.ListServiceRevisions(ctx, name)
}

// View is the service with its progress, replicas and (withEvents) its
// last events.
func (c *Controller) View(ctx context.Context, name string, withEvents bool) (*persysv1.ServiceView, error) {
	svc, _, err := c.st.GetService(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.viewOf(ctx, svc, withEvents), nil
}

func (c *Controller) viewOf(ctx context.Context, svc *persysv1.Service, withEvents bool) *persysv1.ServiceView {
	v := &persysv1.ServiceView{Service: svc}
	if p, err := c.st.GetServiceProgress(ctx, svc.GetName()); err == nil {
		v.Progress = p
	}
	_, views := c.replicas(svc, nil)
	for _, w := range views {
		v.Replicas = append(v.Replicas, w.GetWorkload().GetName())
	}
	slices.Sort(v.Replicas)
	if withEvents {
		if evs, err := c.st.ListEvents(ctx, EventSubject(svc.GetName()), 20); err == nil {
			v.Events = evs
		}
	}
	return v
}

// List returns every service's view.
func (c *Controller) List(ctx context.Context) ([]*persysv1.ServiceView, error) {
	svcs, _, err := c.st.ListServices(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*persysv1.ServiceView, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, c.viewOf(ctx, s, false))
	}
	return out, nil
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
