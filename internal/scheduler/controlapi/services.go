package controlapi

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/servicectl"
)

// Services is the service controller's API (internal/servicectl).
type Services interface {
	Apply(ctx context.Context, who principal.Principal, req *persysv1.ApplyServiceRequest) (*persysv1.Service, string, error)
	View(ctx context.Context, name string, withEvents bool) (*persysv1.ServiceView, error)
	List(ctx context.Context) ([]*persysv1.ServiceView, error)
	Delete(ctx context.Context, who principal.Principal, name string) error
	Scale(ctx context.Context, who principal.Principal, name string, replicas int32) (*persysv1.Service, error)
	SetPaused(ctx context.Context, who principal.Principal, name string, paused bool) (*persysv1.Service, error)
	Promote(ctx context.Context, who principal.Principal, name string) (*persysv1.Service, error)
	Undo(ctx context.Context, who principal.Principal, name string, to uint64) (*persysv1.Service, error)
	History(ctx context.Context, name string) ([]*persysv1.ServiceRevision, error)
	Endpoints(ctx context.Context, name string) (*persysv1.ServiceEndpointList, error)
	WatchEndpoints(ctx context.Context, name string, send func(*persysv1.ServiceEndpointList) error) error
}

var _ Services = (*servicectl.Controller)(nil)

// serviceCall checks that this replica serves, the caller's principal and
// the service name, for every service call.
func (c *controlService) serviceCall(ctx context.Context, name string) (principal.Principal, error) {
	if err := c.s.Serving(ctx); err != nil {
		return principal.Principal{}, err
	}
	who, err := principal.Of(ctx)
	if err != nil {
		return who, err
	}
	return who, checkServiceName(name)
}

func checkServiceName(name string) error {
	if name == "" {
		return status.Error(codes.InvalidArgument, "name: required")
	}
	if len(name) > manifest.MaxServiceNameLen {
		return status.Errorf(codes.InvalidArgument, "name: at most %d characters", manifest.MaxServiceNameLen)
	}
	return nil
}

func (c *controlService) ApplyService(ctx context.Context, req *persysv1.ApplyServiceRequest) (*persysv1.ApplyServiceResponse, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := manifest.ValidateApplyServiceRequest(req); err != nil {
		return nil, toStatus(err)
	}
	svc, result, err := c.s.Services().Apply(ctx, who, req)
	if err != nil {
		return nil, toStatus(err)
	}
	v, err := c.s.Services().View(ctx, svc.GetName(), false)
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ApplyServiceResponse{Service: v, Result: result}, nil
}

func (c *controlService) GetService(ctx context.Context, req *persysv1.GetServiceRequest) (*persysv1.ServiceView, error) {
	if _, err := c.serviceCall(ctx, req.GetName()); err != nil {
		return nil, err
	}
	v, err := c.s.Services().View(ctx, req.GetName(), req.GetWithEvents())
	return v, toStatus(err)
}

func (c *controlService) ListServices(ctx context.Context, _ *persysv1.ListServicesRequest) (*persysv1.ListServicesResponse, error) {
	if err := c.s.Serving(ctx); err != nil {
		return nil, err
	}
	vs, err := c.s.Services().List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.ListServicesResponse{Services: vs}, nil
}

func (c *controlService) DeleteService(ctx context.Context, req *persysv1.DeleteServiceRequest) (*persysv1.DeleteServiceResponse, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := c.s.Services().Delete(ctx, who, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.DeleteServiceResponse{}, nil
}

// viewAfter answers a service write with the service's view.
func (c *controlService) viewAfter(ctx context.Context, svc *persysv1.Service, err error) (*persysv1.ServiceView, error) {
	if err != nil {
		return nil, toStatus(err)
	}
	v, err := c.s.Services().View(ctx, svc.GetName(), false)
	return v, toStatus(err)
}

func (c *controlService) ScaleService(ctx context.Context, req *persysv1.ScaleServiceRequest) (*persysv1.ServiceView, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	svc, err := c.s.Services().Scale(ctx, who, req.GetName(), req.GetReplicas())
	return c.viewAfter(ctx, svc, err)
}

func (c *controlService) RolloutHistory(ctx context.Context, req *persysv1.GetServiceRequest) (*persysv1.RolloutHistoryResponse, error) {
	if _, err := c.serviceCall(ctx, req.GetName()); err != nil {
		return nil, err
	}
	revs, err := c.s.Services().History(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &persysv1.RolloutHistoryResponse{Revisions: revs}, nil
}

func (c *controlService) RolloutUndo(ctx context.Context, req *persysv1.RolloutUndoRequest) (*persysv1.ServiceView, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	svc, err := c.s.Services().Undo(ctx, who, req.GetName(), req.GetToRevision())
	return c.viewAfter(ctx, svc, err)
}

func (c *controlService) RolloutPause(ctx context.Context, req *persysv1.GetServiceRequest) (*persysv1.ServiceView, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	svc, err := c.s.Services().SetPaused(ctx, who, req.GetName(), true)
	return c.viewAfter(ctx, svc, err)
}

func (c *controlService) RolloutResume(ctx context.Context, req *persysv1.GetServiceRequest) (*persysv1.ServiceView, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	svc, err := c.s.Services().SetPaused(ctx, who, req.GetName(), false)
	return c.viewAfter(ctx, svc, err)
}

func (c *controlService) RolloutPromote(ctx context.Context, req *persysv1.GetServiceRequest) (*persysv1.ServiceView, error) {
	who, err := c.serviceCall(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	svc, err := c.s.Services().Promote(ctx, who, req.GetName())
	return c.viewAfter(ctx, svc, err)
}

func (c *controlService) GetServiceEndpoints(ctx context.Context, req *persysv1.ServiceEndpointsRequest) (*persysv1.ServiceEndpointList, error) {
	if _, err := c.serviceCall(ctx, req.GetName()); err != nil {
		return nil, err
	}
	l, err := c.s.Services().Endpoints(ctx, req.GetName())
	return l, toStatus(err)
}

// WatchServiceEndpoints streams the service's endpoints: the current set,
// then the whole new set at each change. It ends with NotFound when the
// service goes, Unavailable when the scheduler stops.
func (c *controlService) WatchServiceEndpoints(req *persysv1.ServiceEndpointsRequest, stream grpc.ServerStreamingServer[persysv1.ServiceEndpointList]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// A stream's caller was authorized by its role (StreamAuth); reading
	// endpoints needs no principal.
	if err := c.s.Serving(ctx); err != nil {
		return err
	}
	if err := checkServiceName(req.GetName()); err != nil {
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
	err := c.s.Services().WatchEndpoints(ctx, req.GetName(), stream.Send)
	select {
	case <-stopped:
		return status.Error(codes.Unavailable, "scheduler is shutting down")
	default:
	}
	if errors.Is(err, context.Canceled) && stream.Context().Err() != nil {
		return status.FromContextError(stream.Context().Err()).Err()
	}
	return toStatus(err)
}
