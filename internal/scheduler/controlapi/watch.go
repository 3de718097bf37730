package controlapi

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/scheduler/watchhub"
)

// maxSelectorPairs bounds a watch's label selector.
const maxSelectorPairs = 32

// watchRequest checks a request's position; the kind's filters are
// checked by the caller.
func watchRequest(kind watchhub.Kind, p *persysv1.WatchPosition) (watchhub.Request, error) {
	req := watchhub.Request{Kind: kind}
	if p.GetSinceRevision() < 0 {
		return req, status.Error(codes.InvalidArgument, "position.since_revision: must not be negative")
	}
	req.Since = watchhub.Position{Revision: p.GetSinceRevision(), Index: watchhub.WholeRevision}
	if p != nil && p.SinceIndex != nil {
		if p.GetSinceIndex() < 0 || p.GetSinceRevision() == 0 {
			return req, status.Error(codes.InvalidArgument, "position.since_index: must not be negative, and needs since_revision")
		}
		req.Since.Index = p.GetSinceIndex()
	}
	return req, nil
}

// watchStatus maps a watch's end to a gRPC status.
func watchStatus(err error) error {
	switch {
	case errors.Is(err, watchhub.ErrCompacted):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, watchhub.ErrFellBehind):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, watchhub.ErrStopped):
		return status.Error(codes.Unavailable, err.Error())
	}
	return toStatus(err)
}

var wireOps = map[watchhub.Op]persysv1.WatchEventType{
	watchhub.OpSnapshot: persysv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT,
	watchhub.OpPut:      persysv1.WatchEventType_WATCH_EVENT_TYPE_PUT,
	watchhub.OpDelete:   persysv1.WatchEventType_WATCH_EVENT_TYPE_DELETE,
	watchhub.OpBookmark: persysv1.WatchEventType_WATCH_EVENT_TYPE_BOOKMARK,
}

// serveWatch runs one watch: send gets each item until the client goes,
// the server stops, or the hub ends the watch.
func (c *controlService) serveWatch(ctx context.Context, req watchhub.Request, send func(*watchhub.Item) error) error {
	if err := c.s.Serving(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.stop != nil {
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	w, err := c.s.Watch(ctx, req)
	if err != nil {
		return watchStatus(err)
	}
	defer w.Close()
	for {
		it, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return watchStatus(err)
		}
		if err := send(it); err != nil {
			return err
		}
	}
}

func (c *controlService) WatchWorkloads(req *persysv1.WatchWorkloadsRequest, stream grpc.ServerStreamingServer[persysv1.WatchWorkloadsResponse]) error {
	wr, err := watchRequest(watchhub.Workloads, req.GetPosition())
	if err != nil {
		return err
	}
	if len(req.GetLabelSelector()) > maxSelectorPairs {
		return status.Errorf(codes.InvalidArgument, "label_selector: at most %d pairs", maxSelectorPairs)
	}
	wr.Selector = req.GetLabelSelector()
	return c.serveWatch(stream.Context(), wr, func(it *watchhub.Item) error {
		return stream.Send(&persysv1.WatchWorkloadsResponse{Type: wireOps[it.Op], Revision: it.Revision, Index: it.Index, Workload: it.Workload})
	})
}

func (c *controlService) WatchNodes(req *persysv1.WatchNodesRequest, stream grpc.ServerStreamingServer[persysv1.WatchNodesResponse]) error {
	wr, err := watchRequest(watchhub.Nodes, req.GetPosition())
	if err != nil {
		return err
	}
	return c.serveWatch(stream.Context(), wr, func(it *watchhub.Item) error {
		return stream.Send(&persysv1.WatchNodesResponse{Type: wireOps[it.Op], Revision: it.Revision, Index: it.Index, Node: it.Node})
	})
}

func (c *controlService) WatchServices(req *persysv1.WatchServicesRequest, stream grpc.ServerStreamingServer[persysv1.WatchServicesResponse]) error {
	wr, err := watchRequest(watchhub.Services, req.GetPosition())
	if err != nil {
		return err
	}
	return c.serveWatch(stream.Context(), wr, func(it *watchhub.Item) error {
		return stream.Send(&persysv1.WatchServicesResponse{Type: wireOps[it.Op], Revision: it.Revision, Index: it.Index, Service: it.Service})
	})
}

func (c *controlService) WatchEvents(req *persysv1.WatchEventsRequest, stream grpc.ServerStreamingServer[persysv1.WatchEventsResponse]) error {
	wr, err := watchRequest(watchhub.Events, req.GetPosition())
	if err != nil {
		return err
	}
	if len(req.GetWorkload()) > manifest.MaxNameLen {
		return status.Errorf(codes.InvalidArgument, "workload: at most %d bytes", manifest.MaxNameLen)
	}
	if len(req.GetType()) > 64 {
		return status.Error(codes.InvalidArgument, "type: at most 64 bytes")
	}
	wr.Workload, wr.Type = req.GetWorkload(), req.GetType()
	return c.serveWatch(stream.Context(), wr, func(it *watchhub.Item) error {
		return stream.Send(&persysv1.WatchEventsResponse{Type: wireOps[it.Op], Revision: it.Revision, Index: it.Index, Event: it.Event})
	})
}
