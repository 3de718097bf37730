package fedsvc

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/manifest"
)

// view is the federated service as one service: the spec as applied
// (all replicas), progress added up over the members that hold it, the
// division in the fedapi.LabelCluster label (a=2,b=2), replica names as
// CLUSTER/REPLICA, and with events the federation's divisions followed
// by each member's events, the cluster named.
func (c *Controller) view(ctx context.Context, v fedstore.Service, events bool) *persysv1.ServiceView {
	out := &persysv1.ServiceView{
		Service:  &persysv1.Service{Name: v.Name, Labels: map[string]string{}, Deleting: v.Deleting},
		Progress: &persysv1.ServiceProgress{Name: v.Name, Revision: uint64(v.Revision)},
	}
	if m, err := manifest.ParseService(v.Manifest); err == nil {
		out.Service.Labels = maps.Clone(m.Metadata.Labels)
		if out.Service.Labels == nil {
			out.Service.Labels = map[string]string{}
		}
		out.Service.Spec = m.ToApplyServiceRequest().GetSpec()
	}
	out.Service.Labels[fedapi.LabelCluster] = fedplace.FormatShares(v.Decision.Shares)
	out.Service.Labels[fedapi.LabelRevision] = strconv.FormatInt(v.Revision, 10)
	if len(v.History) > 0 {
		out.Service.CreatedAt = timestamppb.New(v.History[0].At)
		out.Service.UpdatedAt = timestamppb.New(v.Decision.At)
	}
	if events {
		for _, d := range v.History {
			out.Events = append(out.Events, &persysv1.Event{Time: timestamppb.New(d.At), Type: "FederationSpread",
				Message: "shares " + fedplace.FormatShares(d.Shares) + " (federation revision " + strconv.FormatInt(d.Revision, 10) +
					", decision " + strconv.FormatInt(d.Seq, 10) + "): " + d.Reason})
		}
	}
	var (
		notes  []string
		phases = map[persysv1.RolloutPhase]bool{}
	)
	for _, cl := range holders(v) {
		mv, err := c.memberView(ctx, cl, v.Name, events)
		if err != nil {
			notes = append(notes, cl+": "+err.Error())
			continue
		}
		p := mv.GetProgress()
		out.Progress.Replicas += p.GetReplicas()
		out.Progress.Ready += p.GetReady()
		out.Progress.Updated += p.GetUpdated()
		out.Progress.Available += p.GetAvailable()
		phases[p.GetPhase()] = true
		notes = append(notes, cl+": "+strconv.Itoa(int(p.GetReady()))+"/"+strconv.Itoa(int(p.GetReplicas()))+" ready, "+
			strings.TrimPrefix(p.GetPhase().String(), "ROLLOUT_PHASE_"))
		for _, r := range mv.GetReplicas() {
			out.Replicas = append(out.Replicas, cl+"/"+r)
		}
		for _, e := range mv.GetEvents() {
			e.Message = "cluster " + cl + ": " + e.GetMessage()
			if e.GetNodeId() != "" {
				e.NodeId = cl + "/" + e.GetNodeId()
			}
			out.Events = append(out.Events, e)
		}
	}
	out.Progress.Message = strings.Join(notes, "; ")
	out.Progress.Phase = persysv1.RolloutPhase_ROLLOUT_PHASE_PROGRESSING
	if len(phases) == 1 {
		for p := range phases {
			out.Progress.Phase = p
		}
	}
	if events {
		slices.SortStableFunc(out.Events, func(a, b *persysv1.Event) int {
			return a.GetTime().AsTime().Compare(b.GetTime().AsTime())
		})
	}
	return out
}

func (c *Controller) memberView(ctx context.Context, cluster, name string, events bool) (*persysv1.ServiceView, error) {
	mc, err := c.pool.Client(ctx, cluster)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return mc.GetService(cctx, name, events)
}

// List returns every federated service as its members show it.
func (c *Controller) List(ctx context.Context) (*persysv1.ListServicesResponse, error) {
	vs, _, err := c.cfg.Store.ListServices(ctx)
	if err != nil {
		return nil, err
	}
	out := &persysv1.ListServicesResponse{}
	for _, v := range vs {
		out.Services = append(out.Services, c.view(ctx, v, false))
	}
	return out, nil
}

// Get returns one federated service, with the federation's divisions
// and the members' events when events is true.
func (c *Controller) Get(ctx context.Context, name string, events bool) (*persysv1.ServiceView, error) {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	return c.view(ctx, v, events), nil
}

// History returns the rollout revisions kept by the member with the
// largest share (the first by name among equals): members roll out one
// template, each with its own history. Empty when no member answers.
func (c *Controller) History(ctx context.Context, name string) (*persysv1.RolloutHistoryResponse, error) {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	best := largestShare(v.Decision.Shares)
	if best == "" {
		return &persysv1.RolloutHistoryResponse{}, nil
	}
	mc, err := c.pool.Client(ctx, best)
	if err != nil {
		return &persysv1.RolloutHistoryResponse{}, nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	h, err := mc.RolloutHistory(cctx, name)
	if err != nil {
		return &persysv1.RolloutHistoryResponse{}, nil
	}
	return h, nil
}
