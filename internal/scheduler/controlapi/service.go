// Package controlapi is the gRPC ControlService: a thin adapter over the
// scheduler's loop (Loop) and its identity and secrets services. Each
// method checks what the wire brings (field validation, the caller's
// principal and role, whether this replica serves), calls the local
// implementation, and maps its errors to gRPC codes once, here (toStatus).
// Calls made in process go through the same methods (New), so they share
// one path with calls over the wire.
//
// Callers serve New's result with UnaryAuth and StreamAuth installed (they
// put the caller's verified identity into the context, see
// internal/principal); the scheduler's Serve does that.
package controlapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/identity"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
	"github.com/persys-dev/compute/internal/secretsvc"
	"github.com/persys-dev/compute/internal/store"
)

// Loop is the scheduler's local API, as the adapter uses it.
type Loop interface {
	// Serving refuses calls a follower or a loading replica must not
	// answer (a gRPC status naming the leader when known).
	Serving(ctx context.Context) error

	RegisterNode(ctx context.Context, req *persysv1.RegisterNodeRequest) (*persysv1.RegisterNodeResponse, error)
	Heartbeat(ctx context.Context, req *persysv1.HeartbeatRequest) (*persysv1.HeartbeatResponse, error)

	// PrepareSpec checks and completes what the manifest rules cannot see
	// (host access, compose files, secrets) for who.
	PrepareSpec(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) error
	ApplyWorkload(ctx context.Context, who principal.Principal, req *persysv1.ApplyRequest) (*persysv1.Workload, string, error)
	// WorkloadView is nil when the workload does not exist; ctx may be
	// nil when events are not wanted.
	WorkloadView(name string, withEvents bool, ctx context.Context) *persysv1.WorkloadView
	WorkloadNames(selector map[string]string) []string
	DeleteWorkload(ctx context.Context, name string) error
	RetryWorkload(ctx context.Context, name string) (*persysv1.WorkloadView, error)
	// Subscribe returns a channel that receives when the workload
	// changes, and the function that ends the subscription.
	Subscribe(name string) (chan struct{}, func())
	WorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error)
	// StreamWorkloadLogs relays the agent's follow of a workload's log to
	// send until ctx ends or the agent's stream does.
	StreamWorkloadLogs(ctx context.Context, req *persysv1.StreamWorkloadLogsRequest, send func(*persysv1.StreamWorkloadLogsResponse) error) error

	// NodeViews lists the nodes, or only node only when it is not "".
	NodeViews(only string) []*persysv1.Node
	SetCordon(ctx context.Context, id string, cordoned bool) (*persysv1.Node, error)
	Drain(ctx context.Context, id string, timeout time.Duration) (*persysv1.DrainResponse, error)

	ClusterSummary() *persysv1.ClusterSummary
	ListEvents(ctx context.Context, f store.EventFilter, limit int) ([]*persysv1.Event, error)
	Leader() *persysv1.LeaderInfo

	// Watch starts a resumable watch (watch.go).
	Watch(ctx context.Context, req watchhub.Request) (*watchhub.Watcher, error)

	// Services is the service controller's API (services.go).
	Services() Services
}

// New returns the ControlService over loop, id and sec. stop, when not
// nil, ends open WatchWorkload streams (a graceful stop waits for every
// stream, and a watch never ends alone).
func New(loop Loop, id *identity.Service, sec *secretsvc.Service, stop <-chan struct{}) persysv1grpc.ControlServiceServer {
	return &controlService{s: loop, id: id, sec: sec, stop: stop}
}

// GetWorkloadLogs asks the agent of the node that runs the workload for
// the tail of its log.
func (c *controlService) GetWorkloadLogs(ctx context.Context, req *persysv1.GetWorkloadLogsRequest) (*persysv1.GetWorkloadLogsResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	return c.s.WorkloadLogs(ctx, req)
}

// StreamWorkloadLogs relays the follow of a workload's log from the agent
// of its node; a server shutdown ends it with Unavailable.
func (c *controlService) StreamWorkloadLogs(req *persysv1.StreamWorkloadLogsRequest, stream grpc.ServerStreamingServer[persysv1.StreamWorkloadLogsResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	if err := c.s.Serving(ctx); err != nil {
		return err
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-c.stop:
			close(stopped)
			cancel()
		case <-ctx.Done():
		}
	}()
	err := c.s.StreamWorkloadLogs(ctx, req, stream.Send)
	select {
	case <-stopped:
		return status.Error(codes.Unavailable, "scheduler is shutting down")
	default:
		return err
	}
}
