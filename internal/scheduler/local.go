package scheduler

// The scheduler's local API: what the ControlService adapter
// (internal/scheduler/controlapi) calls. Errors are gRPC statuses or
// wrapped sentinels of internal/store and internal/model, which the
// adapter maps to codes.

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/scheduler/controlapi"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/store"
)

// Service returns the ControlService over this scheduler, for calls made
// in process; they must carry the caller's identity as UnaryAuth sets it
// (principal.WithIdentity).
func (s *Scheduler) Service() persysv1grpc.ControlServiceServer {
	return controlapi.New(s, s.identity, s.secrets, nil)
}

// Watch starts a resumable watch (see internal/scheduler/watchhub).
func (s *Scheduler) Watch(ctx context.Context, req watchhub.Request) (*watchhub.Watcher, error) {
	return s.hub.Watch(ctx, req)
}

// Serving refuses calls a follower must not answer (naming the leader in
// the trailer) and calls that come before the cache is loaded.
func (s *Scheduler) Serving(ctx context.Context) error { return s.serving(ctx) }

// RegisterNode records a node's registration (see registerNode).
func (s *Scheduler) RegisterNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error) {
	return s.registerNode(ctx, req)
}

// Heartbeat records a node's heartbeat (see heartbeat).
func (s *Scheduler) Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error) {
	return s.heartbeat(ctx, req)
}

// PrepareSpec checks and completes a spec for who before it is applied.
func (s *Scheduler) PrepareSpec(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) error {
	return s.prepareSpec(ctx, who, spec)
}

// ApplyWorkload creates or updates a workload whose spec was prepared.
func (s *Scheduler) ApplyWorkload(ctx context.Context, who principal.Principal, req *persysv1.ApplyRequest) (*persysv1.Workload, string, error) {
	return s.applyWorkload(ctx, who, req)
}

// WorkloadView is what describe shows of a workload; nil when there is
// none. ctx may be nil when events are not wanted.
func (s *Scheduler) WorkloadView(name string, withEvents bool, ctx context.Context) *persysv1.WorkloadView {
	return s.viewOf(name, withEvents, ctx)
}

// WorkloadNames lists, sorted, the workloads whose labels match selector.
func (s *Scheduler) WorkloadNames(selector map[string]string) []string {
	return s.cache.WorkloadNames(selector)
}

// DeleteWorkload marks a workload for deletion.
func (s *Scheduler) DeleteWorkload(ctx context.Context, name string) error {
	return s.deleteWorkload(ctx, name)
}

// RetryWorkload forgets a workload's failed attempts and reconciles it now.
func (s *Scheduler) RetryWorkload(ctx context.Context, name string) (*persysv1.WorkloadView, error) {
	if !s.cache.Has(name) {
		return nil, status.Errorf(codes.NotFound, "workload %q not found", name)
	}
	s.resetAttempts(name)
	s.events.Add(model.EventRetryRequested, &persysv1.Event{Workload: name, Message: "retry requested by " + principal.CN(ctx)})
	s.queue.Add(name)
	return s.viewOf(name, false, ctx), nil
}

// Subscribe returns a channel that receives when workload name changes,
// and the function that ends the subscription.
func (s *Scheduler) Subscribe(name string) (chan struct{}, func()) { return s.cache.Subscribe(name) }

// NodeViews lists the nodes, or only node only when it is not "".
func (s *Scheduler) NodeViews(only string) []*persysv1.Node { return s.cache.NodeViews(only) }

// SetCordon cordons or uncordons a node.
func (s *Scheduler) SetCordon(ctx context.Context, id string, cordoned bool) (*persysv1.Node, error) {
	return s.setCordon(ctx, id, cordoned, false)
}

// Drain cordons a node and moves its workloads, waiting up to timeout.
func (s *Scheduler) Drain(ctx context.Context, id string, timeout time.Duration) (*persysv1.DrainResponse, error) {
	return s.drain(ctx, id, timeout)
}

// ClusterSummary counts nodes, capacity and workloads by state.
func (s *Scheduler) ClusterSummary() *persysv1.ClusterSummary {
	out := s.cache.Summary()
	out.Leader = s.leaderAddrString()
	return out
}

// ListEvents reads stored events.
func (s *Scheduler) ListEvents(ctx context.Context, f store.EventFilter, limit int) ([]*persysv1.Event, error) {
	return s.store.ListEventsFiltered(ctx, f, limit)
}

// Leader says who leads.
func (s *Scheduler) Leader() *persysv1.LeaderInfo {
	info := &persysv1.LeaderInfo{Address: s.leaderAddrString(), IsLeader: s.elector.Leading()}
	if s.cfg.Election == nil {
		info.IsLeader = true
	}
	info.Id = info.Address
	return info
}

// Interface guard: the adapter runs over this scheduler.
var _ controlapi.Loop = (*Scheduler)(nil)
